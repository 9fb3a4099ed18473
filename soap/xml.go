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

// scan checks data against the hardening rules (see parseXML) without
// keeping the tree.
func scan(data []byte, lim Limits) error {
	_, _, err := parseXML(data, lim)
	return err
}

// parseXML checks data against the hardening rules and builds its etree
// document in one pass of encoding/xml's tokenizer (the one etree uses):
// size, a single root, no DTD (any directive), no entity but the five
// predefined, only the XML declaration as processing instruction, no comment
// inside the root element, no duplicate attribute on an element, no
// duplicate ID attribute in the document, and the limits. The tree is the one
// etree.Document.ReadFromBytes builds from the same bytes; the layout of the
// SOAP Header and of our Security element is recorded on the way, with the
// namespaces resolved on that tree, so that the byte offsets and the tree
// that Verify checks always name the same elements.
//
// A hardening error is reported in preference to a structural one (an end tag
// that does not match, an unclosed element), as when the checks ran before
// the parse.
func parseXML(data []byte, lim Limits) (*etree.Document, layout, error) {
	lim = lim.withDefaults()
	lay := layout{headerOpenEnd: -1, headerCloseStart: -1, secStart: -1, secEnd: -1}
	if int64(len(data)) > lim.MaxSize {
		return nil, lay, fmt.Errorf("%w (%d bytes, limit %d)", ErrTooLarge, len(data), lim.MaxSize)
	}
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	d.Entity = nil // only &lt; &gt; &amp; &apos; &quot; and character references
	var (
		depth, elements int
		rootSeen        bool
		first           = true
		ids             map[string]struct{}
		treeErr         error // structural error: the tree is no longer built
		envNS           string
		headerEl, secEl *etree.Element
	)
	doc := etree.NewDocument()
	stack := make([]*etree.Element, 1, 16)
	stack[0] = &doc.Element
	for {
		before := d.InputOffset()
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, lay, fmt.Errorf("%w: %v", ErrInvalidXML, err)
		}
		top := stack[len(stack)-1]
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 && rootSeen {
				return nil, lay, fmt.Errorf("%w: more than one root element", ErrInvalidXML)
			}
			rootSeen = true
			depth++
			elements++
			if depth > lim.MaxDepth {
				return nil, lay, fmt.Errorf("%w: depth over %d", ErrLimit, lim.MaxDepth)
			}
			if elements > lim.MaxElements {
				return nil, lay, fmt.Errorf("%w: more than %d elements", ErrLimit, lim.MaxElements)
			}
			if len(t.Attr) > lim.MaxAttributes {
				return nil, lay, fmt.Errorf("%w: more than %d attributes on <%s>", ErrLimit, lim.MaxAttributes, t.Name.Local)
			}
			for i, a := range t.Attr {
				for _, b := range t.Attr[:i] {
					if a.Name == b.Name {
						return nil, lay, fmt.Errorf("%w: %q on <%s>", ErrDuplicateAtt, a.Name.Local, t.Name.Local)
					}
				}
				if isIDAttr(a) {
					if _, dup := ids[a.Value]; dup {
						return nil, lay, fmt.Errorf("%w: %q", ErrDuplicateID, truncate(a.Value))
					}
					if ids == nil {
						ids = map[string]struct{}{}
					}
					ids[a.Value] = struct{}{}
				}
			}
			if treeErr != nil {
				break
			}
			el := newElement(top, t)
			stack = append(stack, el)
			// The layout: depth is len(stack)-1.
			switch len(stack) - 1 {
			case 1:
				envNS = el.NamespaceURI()
			case 2:
				if headerEl == nil && el.Tag == "Header" && el.NamespaceURI() == envNS {
					headerEl = el
					lay.headerOpenEnd = d.InputOffset()
				}
			case 3:
				if top == headerEl && lay.headerCloseStart < 0 && el.Tag == "Security" && el.NamespaceURI() == NamespacePasserelle {
					lay.secCount++
					if secEl == nil {
						secEl = el
						lay.secStart = before
					}
				}
			}
		case xml.EndElement:
			depth--
			if treeErr != nil {
				break
			}
			// As etree: the end tag must close the open element.
			if len(stack) == 1 || top.Tag != t.Name.Local || top.Space != t.Name.Space {
				treeErr = fmt.Errorf("%w: %v", ErrInvalidXML, etree.ErrXML)
				break
			}
			switch top {
			case headerEl:
				lay.headerCloseStart = before
				lay.selfClosing = before == lay.headerOpenEnd && bytes.HasSuffix(data[:before], []byte("/>"))
			case secEl:
				lay.secEnd = d.InputOffset()
			}
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) > 0 {
				return nil, lay, fmt.Errorf("%w: text outside the root element", ErrInvalidXML)
			}
			if treeErr == nil {
				s := string(t)
				top.CreateText(s).SetData(s) // SetData marks whitespace as etree's parser does
			}
		case xml.Comment:
			if depth > 0 {
				return nil, lay, ErrComment
			}
			if treeErr == nil {
				top.CreateComment(string(t))
			}
		case xml.ProcInst:
			if t.Target != "xml" || !first {
				return nil, lay, fmt.Errorf("%w: <?%s?>", ErrProcInst, truncate(t.Target))
			}
			if treeErr == nil {
				top.CreateProcInst(t.Target, string(t.Inst))
			}
		case xml.Directive:
			return nil, lay, ErrDTD
		}
		first = false
	}
	if !rootSeen {
		return nil, lay, fmt.Errorf("%w: no root element", ErrInvalidXML)
	}
	if treeErr == nil && len(stack) != 1 {
		treeErr = fmt.Errorf("%w: %v", ErrInvalidXML, etree.ErrXML)
	}
	if treeErr != nil {
		return nil, lay, treeErr
	}
	if doc.Root() == nil {
		return nil, lay, fmt.Errorf("%w: no root element", ErrInvalidXML)
	}
	lay.elements = elements
	return doc, lay, nil
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
