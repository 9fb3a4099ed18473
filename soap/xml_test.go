package soap

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/beevik/etree"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/pkitest"
)

// refScan is the hardening check as it ran before parseXML built the tree in
// the same pass: a tokenizer pass of its own, before etree parsed the bytes.
func refScan(data []byte, lim Limits) error {
	lim = lim.withDefaults()
	if int64(len(data)) > lim.MaxSize {
		return ErrTooLarge
	}
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	d.Entity = nil
	var (
		depth, elements int
		rootSeen        bool
		first           = true
		ids             = map[string]struct{}{}
	)
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidXML, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 && rootSeen {
				return ErrInvalidXML
			}
			rootSeen = true
			depth++
			elements++
			if depth > lim.MaxDepth || elements > lim.MaxElements || len(t.Attr) > lim.MaxAttributes {
				return ErrLimit
			}
			for i, a := range t.Attr {
				for _, b := range t.Attr[:i] {
					if a.Name == b.Name {
						return ErrDuplicateAtt
					}
				}
				if isIDAttr(a) {
					if _, dup := ids[a.Value]; dup {
						return ErrDuplicateID
					}
					ids[a.Value] = struct{}{}
				}
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) > 0 {
				return ErrInvalidXML
			}
		case xml.Comment:
			if depth > 0 {
				return ErrComment
			}
		case xml.ProcInst:
			if t.Target != "xml" || !first {
				return ErrProcInst
			}
		case xml.Directive:
			return ErrDTD
		}
		first = false
	}
	if !rootSeen {
		return ErrInvalidXML
	}
	return nil
}

// refParse is refScan, then etree's own parser.
func refParse(data []byte, lim Limits) (*etree.Document, error) {
	if err := refScan(data, lim); err != nil {
		return nil, err
	}
	doc := etree.NewDocument()
	doc.ReadSettings = etree.ReadSettings{MaxDepth: lim.withDefaults().MaxDepth + 1}
	if err := doc.ReadFromBytes(data); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidXML, err)
	}
	if doc.Root() == nil {
		return nil, ErrInvalidXML
	}
	return doc, nil
}

// kindOf is the most specific hardening sentinel err matches.
func kindOf(err error) error {
	for _, k := range []error{ErrTooLarge, ErrDTD, ErrLimit, ErrDuplicateID, ErrProcInst, ErrComment, ErrDuplicateAtt, ErrInvalidXML} {
		if errors.Is(err, k) {
			return k
		}
	}
	return err
}

// sameTree reports the first difference between two etree trees: tokens,
// names, attributes (and the namespaces they resolve to), text and its
// whitespace flag, parents and indexes.
func sameTree(a, b *etree.Element, path string) error {
	if a.Space != b.Space || a.Tag != b.Tag || a.NamespaceURI() != b.NamespaceURI() || a.Index() != b.Index() {
		return fmt.Errorf("%s: element %s:%s (%q, index %d), want %s:%s (%q, index %d)", path,
			a.Space, a.Tag, a.NamespaceURI(), a.Index(), b.Space, b.Tag, b.NamespaceURI(), b.Index())
	}
	if len(a.Attr) != len(b.Attr) {
		return fmt.Errorf("%s: %d attributes, want %d", path, len(a.Attr), len(b.Attr))
	}
	for i := range a.Attr {
		x, y := a.Attr[i], b.Attr[i]
		if x.Space != y.Space || x.Key != y.Key || x.Value != y.Value || x.NamespaceURI() != y.NamespaceURI() || x.Element() != a || y.Element() != b {
			return fmt.Errorf("%s: attribute %d = %+v, want %+v", path, i, x, y)
		}
	}
	if len(a.Child) != len(b.Child) {
		return fmt.Errorf("%s: %d children, want %d", path, len(a.Child), len(b.Child))
	}
	for i := range a.Child {
		p := fmt.Sprintf("%s/%d", path, i)
		if a.Child[i].Parent() != a || b.Child[i].Parent() != b || a.Child[i].Index() != i || b.Child[i].Index() != i {
			return fmt.Errorf("%s: parent or index", p)
		}
		switch x := a.Child[i].(type) {
		case *etree.Element:
			y, ok := b.Child[i].(*etree.Element)
			if !ok {
				return fmt.Errorf("%s: element, want %T", p, b.Child[i])
			}
			if err := sameTree(x, y, p+"("+x.Tag+")"); err != nil {
				return err
			}
		case *etree.CharData:
			y, ok := b.Child[i].(*etree.CharData)
			if !ok || x.Data != y.Data || x.IsWhitespace() != y.IsWhitespace() || x.IsCData() != y.IsCData() {
				return fmt.Errorf("%s: text %+v, want %+v", p, x, b.Child[i])
			}
		case *etree.Comment:
			y, ok := b.Child[i].(*etree.Comment)
			if !ok || x.Data != y.Data {
				return fmt.Errorf("%s: comment %+v, want %+v", p, x, b.Child[i])
			}
		case *etree.ProcInst:
			y, ok := b.Child[i].(*etree.ProcInst)
			if !ok || x.Target != y.Target || x.Inst != y.Inst {
				return fmt.Errorf("%s: procinst %+v, want %+v", p, x, b.Child[i])
			}
		default:
			return fmt.Errorf("%s: unexpected %T", p, x)
		}
	}
	return nil
}

// checkParseXML: parseXML accepts what the two-pass intake accepted, refuses
// what it refused for the same reason, builds the same tree as etree, and
// records the layout locate finds.
func checkParseXML(t *testing.T, data []byte, lim Limits) {
	t.Helper()
	doc, lay, err := parseXML(data, lim)
	ref, rerr := refParse(data, lim)
	if (err == nil) != (rerr == nil) || err != nil && kindOf(err) != kindOf(rerr) {
		t.Fatalf("parseXML(%q) error = %v, want %v", data, err, rerr)
	}
	if err != nil {
		return
	}
	if err := sameTree(&doc.Element, &ref.Element, ""); err != nil {
		t.Fatalf("parseXML(%q): %v", data, err)
	}
	got, err := doc.WriteToBytes()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ref.WriteToBytes()
	if !bytes.Equal(got, want) {
		t.Fatalf("parseXML(%q) serializes as\n%s\nwant\n%s", data, got, want)
	}
	wl, lerr := locate(data)
	if lerr != nil || lay.check() != nil {
		// locate and the tree may disagree on a document that is not an
		// envelope; an envelope (ParseEnvelope) must agree below.
		if _, perr := ParseEnvelope("", data, lim); perr != nil {
			return
		}
		if (lerr == nil) != (lay.check() == nil) {
			t.Fatalf("parseXML(%q) layout check = %v, locate = %v", data, lay.check(), lerr)
		}
		return
	}
	lay.secCount, lay.elements = 0, 0
	if lay != wl {
		if _, perr := ParseEnvelope("", data, lim); perr == nil {
			t.Fatalf("parseXML(%q) layout = %+v, locate = %+v", data, lay, wl)
		}
	}
}

func parseXMLCorpus(t testing.TB) [][]byte {
	ca := pkitest.NewCA(t, "parse CA")
	signed, err := Sign(readTestdata(t, "soap-request_prmess-annexE1.xml"), signerFor(t, ca, memberA, pki.ECDSAP256), SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	corpus := [][]byte{
		signed,
		envelope(hAll, bodyOK),
		[]byte(soap12Env),
		[]byte(`<!DOCTYPE l [<!ENTITY a "aa">]><l>&a;</l>`),
		[]byte(`<?xml version="1.0"?>` + "\n<!-- before -->\n<a xmlns=\"urn:d\" xmlns:p=\"urn:p\" p:x=\"1\" y=\"&lt;&amp;\"> <p:b/>t&#x41;<![CDATA[<c>]]>\r\n</a>\n<!-- after -->\n"),
		[]byte(`<a :x="1" x:="2"><b:c xmlns:b="urn:b"></b:c></a>`),
		[]byte(`<a><b></a></b>`),
		[]byte(`<a><b>`),
		[]byte(`<a></a></b>`),
		[]byte(`<a></a><!DOCTYPE x>`),
		[]byte(`<a></b><!-- x --><b/>`),
		[]byte(`<a><b></c><!DOCTYPE x></a>`),
		[]byte(`<a><b></c><?pi x?></a>`),
		[]byte(`<a b="1" b="2"></c>`),
		[]byte(`<a><b></b></a><?xml version="1.0"?>`),
		[]byte(`<a>` + strings.Repeat("<b>", 70) + strings.Repeat("</b>", 70) + `</a>`),
		[]byte(`<a x:Id="1"><b Id="1"/></a>`),
		[]byte(`<?xml version="1.0" encoding="ISO-8859-1"?><a/>`),
		[]byte(" \n "),
		[]byte(``),
		bytes.Replace(signed, []byte("</SOAP-ENV:Header>"), []byte(`<pas:Security xmlns:pas="urn:passerelle:soap:security:1"/></SOAP-ENV:Header>`), 1),
		bytes.Replace(signed, []byte("</SOAP-ENV:Header>"), []byte(`<x:Security xmlns:x="urn:other"/></SOAP-ENV:Header>`), 1),
		bytes.Replace(envelope(hAll, bodyOK), []byte("<SOAP-ENV:Header>"), []byte("<SOAP-ENV:Header/><SOAP-ENV:Header>"), 1),
	}
	for _, name := range []string{"soap-request_prmess-annexE1.xml", "soap-response_prmess-annexE2.xml", "testres_simple-representedparty.query",
		"soap-fault-technical_prmess-annexD1.xml", "soap-fault-nontechnical_prmess-annexD2.xml", "testres_getstate-subsystem.query",
		"testres_getstate-subsystem.answer", "fault-soap11.golden.xml", "fault-soap12.golden.xml"} {
		corpus = append(corpus, readTestdata(t, name))
	}
	return corpus
}

func TestParseXMLMatchesEtree(t *testing.T) {
	for i, data := range parseXMLCorpus(t) {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			checkParseXML(t, data, Limits{})
			checkParseXML(t, data, Limits{MaxElements: 5, MaxDepth: 4})
		})
	}
}

func FuzzParseXML(f *testing.F) {
	for _, data := range parseXMLCorpus(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkParseXML(t, data, Limits{MaxSize: 1 << 20})
	})
}

// checkPlain: where plainTokenizer answers, it answers encoding/xml's tokens
// at encoding/xml's offsets, and parsePlain builds parseDecoder's tree and
// layout.
func checkPlain(t *testing.T, data []byte, lim Limits) {
	t.Helper()
	z := plainTokenizer{data: data}
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	d.Entity = nil
	for {
		tok, st := z.next()
		if st == tokOther {
			break
		}
		want, err := d.RawToken()
		if st == tokEOF {
			if err != io.EOF {
				t.Fatalf("plainTokenizer(%q) at EOF, encoding/xml %v, %v", data, want, err)
			}
			break
		}
		if err != nil || !reflect.DeepEqual(tok, xml.CopyToken(want)) || int64(z.pos) != d.InputOffset() {
			t.Fatalf("plainTokenizer(%q) = %#v at %d, encoding/xml %#v, %v at %d", data, tok, z.pos, want, err, d.InputOffset())
		}
	}
	in, ok := parsePlain(data, lim)
	if !ok {
		return
	}
	doc, lay, err := parseDecoder(data, lim)
	if err != nil {
		t.Fatalf("parsePlain(%q) accepted, parseDecoder: %v", data, err)
	}
	if err := sameTree(&in.doc.Element, &doc.Element, ""); err != nil {
		t.Fatalf("parsePlain(%q): %v", data, err)
	}
	if in.lay != lay {
		t.Fatalf("parsePlain(%q) layout %+v, parseDecoder %+v", data, in.lay, lay)
	}
}

func plainCorpus(t testing.TB) [][]byte {
	return append(parseXMLCorpus(t),
		[]byte(`<?xml version="1.0" encoding="utf-8" ?>`+"\n"+`<a b = 'x"y' c="é€𝄞"><b.c-d_e:f-g/><x:y z:w="1"></x:y  ></a>`),
		[]byte(`<?xml version="1.1"?><a/>`),
		[]byte(`<?xml version='1.0' encoding='utf-8'?><a/>`),
		[]byte(`<?xml version='1.0'?><a/>`),
		[]byte(`<?xml version="1.0" encoding="UTF-8"?>`),
		[]byte(`<?xml version="1.0" encoding="UTF-8"?><?x?><a/>`),
		[]byte(`<?xml version="1.0" encoding="UTF-8"?>x<a/>`),
		[]byte(`<?xml-stylesheet x?><a/>`),
		[]byte(`<?xml?><a/>`),
		[]byte(`<?xml version="1.0"?><?xml version="1.0"?><a/>`),
		[]byte("<a>\x01</a>"),
		[]byte("<a>\xff</a>"),
		[]byte("<a>\uFFFE</a>"),
		[]byte("<a b=\"\x01\"/>"),
		[]byte(`<a>x]]>y</a>`),
		[]byte(`<a b="]]>"/>`),
		[]byte(`<a b="<"/>`),
		[]byte(`<a b="1"c="2"/>`),
		[]byte(`<a b/>`),
		[]byte(`<a b=1/>`),
		[]byte(`<a / >`),
		[]byte(`<a:b:c/>`),
		[]byte(`<a:/>`),
		[]byte(`<:a/>`),
		[]byte(`<a:1b/>`),
		[]byte(`<1a/>`),
		[]byte(`<a></a >`),
		[]byte(`<a></a b>`),
		[]byte(`<a>`),
		[]byte(`<`),
		[]byte(`<a b="1`),
		[]byte(`</a>`),
		[]byte(`<a/><b/>`),
		[]byte(` <a/> x`),
		[]byte("<a>\t\n</a>\n"),
	)
}

func TestPlainTokenizer(t *testing.T) {
	for i, data := range plainCorpus(t) {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			checkPlain(t, data, Limits{})
			checkPlain(t, data, Limits{MaxElements: 5, MaxDepth: 4})
			checkParseXML(t, data, Limits{})
		})
	}
	// The envelopes of an exchange take the plain path.
	for i, data := range parseXMLCorpus(t)[:3] {
		if _, ok := parsePlain(data, Limits{}); !ok {
			t.Errorf("parsePlain(corpus %d) fell back to encoding/xml", i)
		}
	}
}

func FuzzPlainTokenizer(f *testing.F) {
	for _, data := range plainCorpus(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkPlain(t, data, Limits{MaxSize: 1 << 20})
		checkParseXML(t, data, Limits{MaxSize: 1 << 20})
	})
}
