package soap

import (
	"bytes"
	"crypto"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"
	"github.com/russellhaering/goxmldsig/etreeutils"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/pkitest"
)

// refC14N is goxmldsig's exclusive C14N of root (a copy), without skip.
func refC14N(root, skip *etree.Element) ([]byte, error) {
	if skip != nil {
		p := skip.Parent()
		i := skip.Index()
		p.RemoveChildAt(i)
		defer p.InsertChildAt(i, skip)
	}
	return dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("").Canonicalize(root.Copy())
}

func checkC14N(t *testing.T, data []byte) {
	t.Helper()
	doc, _, err := parseXML(data, Limits{MaxSize: 1 << 20})
	if err != nil {
		return
	}
	root := doc.Root()
	skips := append([]*etree.Element{nil}, root.FindElements("//Signature")...)
	for _, skip := range skips {
		before, _ := doc.WriteToBytes()
		c := getC14N()
		c.skip = skip
		err := c.element(root)
		got := c.out.Bytes()
		want, werr := refC14N(root, skip)
		if (err == nil) != (werr == nil) {
			t.Fatalf("c14n(%q) error = %v, goxmldsig %v", data, err, werr)
		}
		if err == nil && !bytes.Equal(got, want) {
			t.Fatalf("c14n(%q) =\n%s\ngoxmldsig\n%s", data, got, want)
		}
		c.release()
		if after, _ := doc.WriteToBytes(); !bytes.Equal(before, after) {
			t.Fatalf("c14n changed the tree")
		}
	}
	// Every element in its context, as Verify canonicalizes SignedInfo.
	for _, el := range root.FindElements("//*") {
		c := getC14N()
		err := c.inContext(el)
		got := c.out.Bytes()
		want, werr := refInContext(el)
		if (err == nil) != (werr == nil) || err == nil && !bytes.Equal(got, want) {
			t.Fatalf("inContext(%s in %q) = %s, %v; goxmldsig %s, %v", el.Tag, data, got, err, want, werr)
		}
		c.release()
	}
}

func refInContext(el *etree.Element) ([]byte, error) {
	ctx, err := etreeutils.NSBuildParentContext(el)
	if err != nil {
		return nil, err
	}
	detached, err := etreeutils.NSDetatch(ctx, el)
	if err != nil {
		return nil, err
	}
	return dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("").Canonicalize(detached)
}

func c14nCorpus(t testing.TB) [][]byte {
	return append(parseXMLCorpus(t),
		[]byte(`<a xmlns="urn:a"><b xmlns=""><c xmlns="urn:a"/></b><p:d xmlns:p="urn:p" xmlns:q="urn:q" q:z="1" p:y="2" x="3" a="&quot;&#9;&#xA;&#xD;&lt;&gt;&amp;'">t&#xD;&gt;"'`+"\t\n"+`</p:d></a>`),
		[]byte(`<a xmlns:p="urn:p" xmlns:q="urn:p"><p:b p:x="1" q:x="2" q:a="3"/></a>`),
		[]byte(`<a xmlns:p="urn:p"><p:b xmlns:p="urn:other"><p:c xmlns:p="urn:p"/></p:b></a>`),
		[]byte(`<p:a><b/></p:a>`),
		[]byte(`<a xmlns:xml="urn:bad"/>`),
		[]byte(`<a xmlns:xmlns="urn:bad"/>`),
		[]byte(`<a xmlns="http://www.w3.org/2000/xmlns/"/>`),
		[]byte(`<a xml:lang="en" xmlns:xml="http://www.w3.org/XML/1998/namespace"><b xml:space="preserve"/></a>`),
		[]byte(`<a xmlns="http://www.w3.org/XML/1998/namespace"><b xmlns=""/></a>`),
		[]byte(`<a :x="1" x:="2" xmlns:x="urn:x"/>`),
		[]byte(`<a><b>`+strings.Repeat("<c/>", 1000)+`</b><d>`+strings.Repeat("<c/>", 998)+`</d><e>`+strings.Repeat("<c/>", 999)+`</e></a>`),
	)
}

func TestC14NMatchesGoxmldsig(t *testing.T) {
	for i, data := range c14nCorpus(t) {
		t.Run(fmt.Sprint(i), func(t *testing.T) { checkC14N(t, data) })
	}
}

func FuzzC14N(f *testing.F) {
	for _, data := range c14nCorpus(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkC14N(t, data) })
}

// refSign is Sign as goxmldsig's ConstructSignature made it before Sign
// wrote the canonical form itself.
func refSign(t *testing.T, envelope []byte, s Signer, opt SignOptions) []byte {
	env, err := ParseEnvelope("", envelope, opt.Limits)
	if err != nil {
		t.Fatal(err)
	}
	sec := buildSecurity(opt.Time.UTC(), s.OCSP, opt.Attachments, opt.RequestDigest)
	env.header.AddChild(sec.Copy())
	var certs [][]byte
	for _, c := range s.Chain {
		certs = append(certs, c.Raw)
	}
	ctx, err := dsig.NewSigningContext(rawSigner{s.Key}, certs)
	if err != nil {
		t.Fatal(err)
	}
	ctx.Canonicalizer = dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")
	ctx.IdAttribute = ""
	ctx.Hash = crypto.SHA256
	sig, err := ctx.ConstructSignature(env.doc.Root().Copy(), true)
	if err != nil {
		t.Fatal(err)
	}
	sec.AddChild(sig)
	out := etree.NewDocument()
	out.SetRoot(sec)
	secBytes, err := out.WriteToBytes()
	if err != nil {
		t.Fatal(err)
	}
	return splice(envelope, env.lay.headerCloseStart, secBytes)
}

// TestSignMatchesGoxmldsig: with a deterministic (RSA PKCS #1 v1.5)
// signature, Sign writes the bytes goxmldsig's ConstructSignature wrote.
func TestSignMatchesGoxmldsig(t *testing.T) {
	ca := pkitest.NewCA(t, "soap test CA")
	s := signerFor(t, ca, memberA, pki.RSA2048)
	opt := SignOptions{Time: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), RequestDigest: MessageDigest([]byte("req")),
		Attachments: []AttachmentDigest{{ContentID: "<a>", ContentType: "text/plain", Size: 3, SHA256: make([]byte, 32)}}}
	for _, data := range [][]byte{readTestdata(t, "soap-request_prmess-annexE1.xml"), readTestdata(t, "soap-response_prmess-annexE2.xml"),
		readTestdata(t, "testres_simple-representedparty.query"), envelope(hAll, bodyOK), []byte(soap12Env)} {
		got, err := Sign(data, s, opt)
		if err != nil {
			t.Fatal(err)
		}
		if want := refSign(t, data, s, opt); !bytes.Equal(got, want) {
			t.Fatalf("Sign =\n%s\ngoxmldsig\n%s", got, want)
		}
	}
}
