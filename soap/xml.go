package soap

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"

	"github.com/beevik/etree"
)

// Limits bound what the hardened XML intake accepts. The zero value of a
// field means its default (see DefaultLimits).
type Limits struct {
	MaxSize        int64 // bytes of the SOAP envelope (the SOAP part with attachments)
	MaxDepth       int   // element nesting
	MaxElements    int   // elements in the whole document
	MaxAttributes  int   // attributes (namespace declarations included) on one element
	MaxAttachments int   // MIME attachments of one message
}

// DefaultLimits are the limits used for zero fields of a Limits.
var DefaultLimits = Limits{
	MaxSize:        10 << 20,
	MaxDepth:       64,
	MaxElements:    100_000,
	MaxAttributes:  64,
	MaxAttachments: 100,
}

func (l Limits) withDefaults() Limits {
	if l.MaxSize <= 0 {
		l.MaxSize = DefaultLimits.MaxSize
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultLimits.MaxDepth
	}
	if l.MaxElements <= 0 {
		l.MaxElements = DefaultLimits.MaxElements
	}
	if l.MaxAttributes <= 0 {
		l.MaxAttributes = DefaultLimits.MaxAttributes
	}
	if l.MaxAttachments <= 0 {
		l.MaxAttachments = DefaultLimits.MaxAttachments
	}
	return l
}

// Errors of the hardened XML intake. Each wraps ErrInvalidXML.
var (
	ErrInvalidXML   = errors.New("soap: invalid XML")
	ErrTooLarge     = fmt.Errorf("%w: envelope too large", ErrInvalidXML)
	ErrDTD          = fmt.Errorf("%w: DTD not allowed", ErrInvalidXML)
	ErrLimit        = fmt.Errorf("%w: limit exceeded", ErrInvalidXML)
	ErrDuplicateID  = fmt.Errorf("%w: duplicate ID attribute", ErrInvalidXML)
	ErrProcInst     = fmt.Errorf("%w: processing instruction not allowed", ErrInvalidXML)
	ErrComment      = fmt.Errorf("%w: comment inside the envelope not allowed", ErrInvalidXML)
	ErrDuplicateAtt = fmt.Errorf("%w: duplicate attribute", ErrInvalidXML)
)

// isIDAttr reports whether an attribute is an ID attribute for the
// duplicate check: local name Id, ID or id, with any prefix (wsu:Id, xml:id…).
func isIDAttr(a xml.Attr) bool {
	if a.Name.Space == "xmlns" {
		return false
	}
	switch a.Name.Local {
	case "Id", "ID", "id":
		return true
	}
	return false
}

// parseXML checks data against the hardening rules and builds its etree
// document in one pass: size, a single root, no DTD (any directive), no
// entity but the five predefined, only the XML declaration as processing
// instruction, no comment inside the root element, no duplicate attribute on
// an element, no duplicate ID attribute in the document, and the limits. The
// tree is the one etree.Document.ReadFromBytes builds from the same bytes;
// the layout of the SOAP Header and of our Security element is recorded on
// the way, with the namespaces resolved on that tree, so that the byte
// offsets and the tree that Verify checks always name the same elements.
//
// The tokens are encoding/xml's (the tokenizer etree uses). A document in
// the plain subset that envelopes are in practice (see plainTokenizer) is
// tokenized by a faster scanner that yields the same tokens; at anything
// else, or at anything the checks refuse, parseXML starts over with
// encoding/xml, so that what is accepted, and every error, is encoding/xml's.
//
// A hardening error is reported in preference to a structural one (an end tag
// that does not match, an unclosed element), as when the checks ran before
// the parse.
func parseXML(data []byte, lim Limits) (*etree.Document, layout, error) {
	lim = lim.withDefaults()
	if int64(len(data)) > lim.MaxSize {
		return nil, newIntake(lim).lay, fmt.Errorf("%w (%d bytes, limit %d)", ErrTooLarge, len(data), lim.MaxSize)
	}
	if in, ok := parsePlain(data, lim); ok {
		return in.doc, in.lay, nil
	}
	return parseDecoder(data, lim)
}

// parsePlain is parseXML with plainTokenizer; false when it cannot tell.
func parsePlain(data []byte, lim Limits) (*intake, bool) {
	in := newIntake(lim)
	z := plainTokenizer{data: data}
	for {
		before := int64(z.pos)
		tok, st := z.next()
		switch st {
		case tokEOF:
			if in.finish() != nil {
				return nil, false
			}
			return in, true
		case tokOther:
			return nil, false
		}
		if in.token(data, tok, before, int64(z.pos)) != nil || in.treeErr != nil {
			return nil, false
		}
	}
}

// parseDecoder is parseXML with encoding/xml's tokenizer.
func parseDecoder(data []byte, lim Limits) (*etree.Document, layout, error) {
	in := newIntake(lim)
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	d.Entity = nil // only &lt; &gt; &amp; &apos; &quot; and character references
	for {
		before := d.InputOffset()
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, in.lay, fmt.Errorf("%w: %v", ErrInvalidXML, err)
		}
		if err := in.token(data, tok, before, d.InputOffset()); err != nil {
			return nil, in.lay, err
		}
	}
	if err := in.finish(); err != nil {
		return nil, in.lay, err
	}
	return in.doc, in.lay, nil
}

// intake applies the hardening checks to a document's tokens and builds its
// tree and layout.
type intake struct {
	lim             Limits
	depth, elements int
	rootSeen        bool
	first           bool
	ids             map[string]struct{}
	treeErr         error // structural error: the tree is no longer built

	doc             *etree.Document
	stack           []*etree.Element
	lay             layout
	envNS           string
	headerEl, secEl *etree.Element
}

func newIntake(lim Limits) *intake {
	in := &intake{
		lim:   lim.withDefaults(),
		first: true,
		doc:   etree.NewDocument(),
		lay:   layout{headerOpenEnd: -1, headerCloseStart: -1, secStart: -1, secEnd: -1},
	}
	in.stack = append(make([]*etree.Element, 0, 16), &in.doc.Element)
	return in
}

// token takes one token of data that lies at [before, after).
func (in *intake) token(data []byte, tok xml.Token, before, after int64) error {
	top := in.stack[len(in.stack)-1]
	switch t := tok.(type) {
	case xml.StartElement:
		if in.depth == 0 && in.rootSeen {
			return fmt.Errorf("%w: more than one root element", ErrInvalidXML)
		}
		in.rootSeen = true
		in.depth++
		in.elements++
		lim := in.lim
		if in.depth > lim.MaxDepth {
			return fmt.Errorf("%w: depth over %d", ErrLimit, lim.MaxDepth)
		}
		if in.elements > lim.MaxElements {
			return fmt.Errorf("%w: more than %d elements", ErrLimit, lim.MaxElements)
		}
		if len(t.Attr) > lim.MaxAttributes {
			return fmt.Errorf("%w: more than %d attributes on <%s>", ErrLimit, lim.MaxAttributes, t.Name.Local)
		}
		for i, a := range t.Attr {
			for _, b := range t.Attr[:i] {
				if a.Name == b.Name {
					return fmt.Errorf("%w: %q on <%s>", ErrDuplicateAtt, a.Name.Local, t.Name.Local)
				}
			}
			if isIDAttr(a) {
				if _, dup := in.ids[a.Value]; dup {
					return fmt.Errorf("%w: %q", ErrDuplicateID, truncate(a.Value))
				}
				if in.ids == nil {
					in.ids = map[string]struct{}{}
				}
				in.ids[a.Value] = struct{}{}
			}
		}
		if in.treeErr != nil {
			break
		}
		el := newElement(top, t)
		in.stack = append(in.stack, el)
		// The layout: depth is len(stack)-1.
		switch len(in.stack) - 1 {
		case 1:
			in.envNS = el.NamespaceURI()
		case 2:
			if in.headerEl == nil && el.Tag == "Header" && el.NamespaceURI() == in.envNS {
				in.headerEl = el
				in.lay.headerOpenEnd = after
			}
		case 3:
			if top == in.headerEl && in.lay.headerCloseStart < 0 && el.Tag == "Security" && el.NamespaceURI() == NamespacePasserelle {
				in.lay.secCount++
				if in.secEl == nil {
					in.secEl = el
					in.lay.secStart = before
				}
			}
		}
	case xml.EndElement:
		in.depth--
		if in.treeErr != nil {
			break
		}
		// As etree: the end tag must close the open element.
		if len(in.stack) == 1 || top.Tag != t.Name.Local || top.Space != t.Name.Space {
			in.treeErr = fmt.Errorf("%w: %v", ErrInvalidXML, etree.ErrXML)
			break
		}
		switch top {
		case in.headerEl:
			in.lay.headerCloseStart = before
			in.lay.selfClosing = before == in.lay.headerOpenEnd && bytes.HasSuffix(data[:before], []byte("/>"))
		case in.secEl:
			in.lay.secEnd = after
		}
		in.stack = in.stack[:len(in.stack)-1]
	case xml.CharData:
		if in.depth == 0 && len(bytes.TrimSpace(t)) > 0 {
			return fmt.Errorf("%w: text outside the root element", ErrInvalidXML)
		}
		if in.treeErr == nil {
			s := string(t)
			top.CreateText(s).SetData(s) // SetData marks whitespace as etree's parser does
		}
	case xml.Comment:
		if in.depth > 0 {
			return ErrComment
		}
		if in.treeErr == nil {
			top.CreateComment(string(t))
		}
	case xml.ProcInst:
		if t.Target != "xml" || !in.first {
			return fmt.Errorf("%w: <?%s?>", ErrProcInst, truncate(t.Target))
		}
		if in.treeErr == nil {
			top.CreateProcInst(t.Target, string(t.Inst))
		}
	case xml.Directive:
		return ErrDTD
	}
	in.first = false
	return nil
}

// finish checks the end of the document.
func (in *intake) finish() error {
	if !in.rootSeen {
		return fmt.Errorf("%w: no root element", ErrInvalidXML)
	}
	if in.treeErr == nil && len(in.stack) != 1 {
		in.treeErr = fmt.Errorf("%w: %v", ErrInvalidXML, etree.ErrXML)
	}
	if in.treeErr != nil {
		return in.treeErr
	}
	if in.doc.Root() == nil {
		return fmt.Errorf("%w: no root element", ErrInvalidXML)
	}
	in.lay.elements = in.elements
	return nil
}

// newElement adds to parent the element etree's parser makes of t: prefix and
// local name as tokenized, attributes in order, each bound to the element.
func newElement(parent *etree.Element, t xml.StartElement) *etree.Element {
	el := &etree.Element{Space: t.Name.Space, Tag: t.Name.Local}
	if len(t.Attr) > 0 {
		// CreateAttr splits its key at a colon, which the tokenizer has done
		// already (and differently for a name like ":a"): make one attribute
		// bound to el and copy it for each of t's, as etree's parser does.
		el.Attr = make([]etree.Attr, 0, len(t.Attr))
		proto := *el.CreateAttr("a", "")
		el.Attr = el.Attr[:0]
		for _, a := range t.Attr {
			proto.Space, proto.Key, proto.Value = a.Name.Space, a.Name.Local, a.Value
			el.Attr = append(el.Attr, proto)
		}
	}
	parent.AddChild(el)
	return el
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
