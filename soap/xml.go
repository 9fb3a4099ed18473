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

// scan checks data against the hardening rules with encoding/xml's tokenizer
// (the one etree uses): size, a single root, no DTD (any directive), no
// entity but the five predefined, only the XML declaration as processing
// instruction, no comment inside the root element, no duplicate attribute on
// an element, no duplicate ID attribute in the document, and the limits.
func scan(data []byte, lim Limits) error {
	lim = lim.withDefaults()
	if int64(len(data)) > lim.MaxSize {
		return fmt.Errorf("%w (%d bytes, limit %d)", ErrTooLarge, len(data), lim.MaxSize)
	}
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	d.Entity = nil // only &lt; &gt; &amp; &apos; &quot; and character references
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
				return fmt.Errorf("%w: more than one root element", ErrInvalidXML)
			}
			rootSeen = true
			depth++
			elements++
			if depth > lim.MaxDepth {
				return fmt.Errorf("%w: depth over %d", ErrLimit, lim.MaxDepth)
			}
			if elements > lim.MaxElements {
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
					if _, dup := ids[a.Value]; dup {
						return fmt.Errorf("%w: %q", ErrDuplicateID, truncate(a.Value))
					}
					ids[a.Value] = struct{}{}
				}
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) > 0 {
				return fmt.Errorf("%w: text outside the root element", ErrInvalidXML)
			}
		case xml.Comment:
			if depth > 0 {
				return ErrComment
			}
		case xml.ProcInst:
			if t.Target != "xml" || !first {
				return fmt.Errorf("%w: <?%s?>", ErrProcInst, truncate(t.Target))
			}
		case xml.Directive:
			return ErrDTD
		}
		first = false
	}
	if !rootSeen {
		return fmt.Errorf("%w: no root element", ErrInvalidXML)
	}
	return nil
}

// parseXML runs scan and then parses data with etree into a document.
func parseXML(data []byte, lim Limits) (*etree.Document, error) {
	if err := scan(data, lim); err != nil {
		return nil, err
	}
	doc := etree.NewDocument()
	doc.ReadSettings = etree.ReadSettings{MaxDepth: lim.withDefaults().MaxDepth + 1}
	if err := doc.ReadFromBytes(data); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidXML, err)
	}
	if doc.Root() == nil {
		return nil, fmt.Errorf("%w: no root element", ErrInvalidXML)
	}
	return doc, nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
