package pki

import (
	"errors"
	"net/url"
	"testing"
)

func TestParseClientID(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    ClientID
		wantErr bool
	}{
		{"member", "EE/GOV/70000001", ClientID{"EE", "GOV", "70000001", ""}, false},
		{"subsystem", "DEV/COM/222/TESTCLIENT", ClientID{"DEV", "COM", "222", "TESTCLIENT"}, false},
		{"allowed punctuation", "A/B/x'()+,-.=?/s", ClientID{"A", "B", "x'()+,-.=?", "s"}, false},
		{"two parts", "EE/GOV", ClientID{}, true},
		{"five parts", "EE/GOV/1/2/3", ClientID{}, true},
		{"empty part", "EE//1", ClientID{}, true},
		{"space", "EE/GOV/a b", ClientID{}, true},
		{"colon", "EE/GOV/a:b", ClientID{}, true},
		{"percent", "EE/GOV/a%2F", ClientID{}, true},
		{"non-ascii", "EE/GOV/é", ClientID{}, true},
		{"empty", "", ClientID{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseClientID(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseClientID(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrBadIdentifier) {
				t.Errorf("ParseClientID(%q) error = %v, want ErrBadIdentifier", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseClientID(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if err == nil && got.String() != tt.in {
				t.Errorf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
}

func TestParseServiceID(t *testing.T) {
	s, err := ParseServiceID("DEV/COM/222/TESTSERVICE/petstore")
	if err != nil {
		t.Fatal(err)
	}
	if s.Code != "petstore" || s.Client.Subsystem != "TESTSERVICE" || s.String() != "DEV/COM/222/TESTSERVICE/petstore" {
		t.Errorf("ParseServiceID = %+v", s)
	}
	for _, bad := range []string{"DEV/COM/222/petstore", "DEV/COM/222/S/p/x", "DEV/COM/222/S/"} {
		if _, err := ParseServiceID(bad); !errors.Is(err, ErrBadIdentifier) {
			t.Errorf("ParseServiceID(%q) error = %v, want ErrBadIdentifier", bad, err)
		}
	}
}

func TestMemberURIRoundTrip(t *testing.T) {
	for _, in := range []string{"EE/GOV/70000001", "A/B/x'()+,-.=?", "SANDBOX/GOV/PROVIDER"} {
		m, err := ParseMemberID(in)
		if err != nil {
			t.Fatal(err)
		}
		u := MemberURI(m)
		// The URI must survive a textual round trip, as it does inside a certificate.
		u2, err := url.Parse(u.String())
		if err != nil {
			t.Fatalf("url.Parse(%q): %v", u, err)
		}
		got, err := ParseMemberURI(u2)
		if err != nil || got != m {
			t.Errorf("ParseMemberURI(%q) = %v, %v; want %v", u, got, err, m)
		}
	}
	if got := MemberURI(ClientID{"A", "B", "x?y", "sub"}).String(); got != "urn:passerelle:member:A/B/x%3Fy" {
		t.Errorf("MemberURI = %q", got)
	}
}

func FuzzParseClientID(f *testing.F) {
	for _, s := range []string{"EE/GOV/70000001", "DEV/COM/222/TESTCLIENT", "a/b/c/d/e", "", "//", "x%00/y/z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseClientID(s)
		if err != nil {
			return
		}
		if c.String() != s {
			t.Fatalf("ParseClientID(%q).String() = %q", s, c.String())
		}
		m := c.MemberID()
		back, err := ParseMemberURI(MemberURI(m))
		if err != nil || back != m {
			t.Fatalf("member URI round trip of %q: %v, %v", s, back, err)
		}
	})
}

func FuzzParseMemberURI(f *testing.F) {
	for _, s := range []string{"urn:passerelle:member:EE/GOV/1", "urn:passerelle:member:A/B/x%3Fy", "urn:passerelle:member:%zz/a/b", "https://x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := url.Parse(s)
		if err != nil {
			return
		}
		m, err := ParseMemberURI(u)
		if err != nil {
			return
		}
		if m.IsSubsystem() || !ValidPart(m.Instance) || !ValidPart(m.Class) || !ValidPart(m.Member) {
			t.Fatalf("ParseMemberURI(%q) = %+v: invalid result accepted", s, m)
		}
	})
}
