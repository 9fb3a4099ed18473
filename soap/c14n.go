package soap

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/beevik/etree"
	"github.com/russellhaering/goxmldsig/etreeutils"
)

// Exclusive XML canonicalization (without comments, empty InclusiveNamespaces
// prefix list) written straight from an etree tree, byte for byte what
// goxmldsig's MakeC14N10ExclusiveCanonicalizerWithPrefixList("") produces
// for the same tree (including its namespace context defaults and its
// attribute order), which signatures made and checked before were computed
// with. goxmldsig rewrites a copy of the tree and keeps one map per element
// for the namespaces in scope and one for those rendered; here both are
// stacks, the tree is only read, and subtrees can be left out (the
// enveloped Signature) or appended (what Sign inserts) without copying it.
//
// TestC14NMatchesGoxmldsig and FuzzC14N compare the two.

var (
	errReservedNamespace = errors.New("disallowed declaration of reserved namespace")
	errDefaultNamespace  = errors.New("invalid default namespace declaration")
)

type nsBinding struct{ prefix, ns string }

// c14nDefaults are goxmldsig's default namespace context (NewDefaultNSContext):
// what both the scope and the rendered declarations start from.
var c14nDefaults = []nsBinding{{"", etreeutils.XMLNamespace}, {"xml", etreeutils.XMLNamespace}, {"xmlns", etreeutils.XMLNSNamespace}}

type c14n struct {
	out      bytes.Buffer
	scope    []nsBinding // declared in the input, innermost last
	rendered []nsBinding // declared in the output, innermost last
	attrs    []etree.Attr
	used     []string

	skip     *etree.Element   // left out with its subtree
	appendTo *etree.Element   // appendix is written as its last children
	appendix []*etree.Element // in order
}

var c14nPool = sync.Pool{New: func() any { return new(c14n) }}

// getC14N returns a canonicalizer with empty output, from a pool: release
// it when its output is no longer used.
func getC14N() *c14n {
	c := c14nPool.Get().(*c14n)
	c.reset()
	return c
}

// reset empties the output and the namespace context.
func (c *c14n) reset() {
	c.out.Reset()
	c.scope = append(c.scope[:0], c14nDefaults...)
	c.rendered = append(c.rendered[:0], c14nDefaults...)
	c.skip, c.appendTo, c.appendix = nil, nil, nil
}

func (c *c14n) release() {
	if c.out.Cap() > 1<<20 {
		return // not worth keeping
	}
	c.skip, c.appendTo, c.appendix = nil, nil, nil
	clear(c.attrs[:cap(c.attrs)])
	clear(c.used[:cap(c.used)])
	c14nPool.Put(c)
}

// sum is the SHA-256 of the output.
func (c *c14n) sum() [sha256.Size]byte { return sha256.Sum256(c.out.Bytes()) }

func lookupNS(bs []nsBinding, prefix string) (string, bool) {
	for i := len(bs) - 1; i >= 0; i-- {
		if bs[i].prefix == prefix {
			return bs[i].ns, true
		}
	}
	return "", false
}

// declare adds el's namespace declarations to the scope (goxmldsig's
// NSContext.SubContext, errors included).
func (c *c14n) declare(el *etree.Element) error {
	for _, a := range el.Attr {
		switch {
		case a.Space == "xmlns":
			if a.Key == "xml" && a.Value != etreeutils.XMLNamespace || a.Key == "xmlns" {
				return errReservedNamespace
			}
			c.scope = append(c.scope, nsBinding{a.Key, a.Value})
		case a.Space == "" && a.Key == "xmlns":
			if a.Value == etreeutils.XMLNSNamespace {
				return errDefaultNamespace
			}
			c.scope = append(c.scope, nsBinding{"", a.Value})
		}
	}
	return nil
}

// inContextOf puts the namespace declarations of el's ancestors in scope, as
// goxmldsig's NSBuildParentContext does, to canonicalize el where it is.
func (c *c14n) inContextOf(el *etree.Element) error {
	var chain []*etree.Element
	for p := el.Parent(); p != nil; p = p.Parent() {
		chain = append(chain, p)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		if err := c.declare(chain[i]); err != nil {
			return err
		}
	}
	return nil
}

// maxDetachElements is goxmldsig's limit on the elements of a subtree it
// canonicalizes in its context (NSDetatch).
const maxDetachElements = 1000

// inContext writes the exclusive C14N of el with the namespaces of its
// ancestors in scope, as goxmldsig computes it with NSBuildParentContext,
// NSDetatch and its canonicalizer (for a SignedInfo).
func (c *c14n) inContext(el *etree.Element) error {
	if err := c.inContextOf(el); err != nil {
		return err
	}
	if countElements(el, maxDetachElements+1) > maxDetachElements {
		return errors.New("traversal limit reached")
	}
	return c.element(el)
}

// countElements counts el and its descendants, stopping at max.
func countElements(el *etree.Element, max int) int {
	n := 1
	for _, t := range el.Child {
		if n >= max {
			break
		}
		if c, ok := t.(*etree.Element); ok {
			n += countElements(c, max-n)
		}
	}
	return n
}

func (c *c14n) element(el *etree.Element) error {
	scopeLen, renderedLen := len(c.scope), len(c.rendered)
	defer func() { c.scope, c.rendered = c.scope[:scopeLen], c.rendered[:renderedLen] }()
	if err := c.declare(el); err != nil {
		return err
	}
	// The attributes but namespace declarations, then a declaration for each
	// visibly utilized prefix not yet rendered with its in-scope value.
	c.attrs, c.used = c.attrs[:0], append(c.used[:0], el.Space)
	for _, a := range el.Attr {
		if a.Space == "xmlns" || a.Space == "" && a.Key == "xmlns" {
			continue
		}
		if a.Space != "" {
			c.used = appendUnique(c.used, a.Space)
		}
		c.attrs = append(c.attrs, a)
	}
	sort.Strings(c.used)
	for _, p := range c.used {
		inScope, ok := lookupNS(c.scope, p)
		if r, done := lookupNS(c.rendered, p); done && ok && r == inScope {
			continue
		}
		if !ok {
			return fmt.Errorf("undeclared namespace prefix: '%s'", p)
		}
		c.rendered = append(c.rendered, nsBinding{p, inScope})
		if p == "" {
			c.attrs = append(c.attrs, etree.Attr{Key: "xmlns", Value: inScope})
		} else {
			c.attrs = append(c.attrs, etree.Attr{Space: "xmlns", Key: p, Value: inScope})
		}
	}
	sort.Sort(etreeutils.SortedAttrs(c.attrs))

	w := &c.out
	w.WriteByte('<')
	writeName(w, el.Space, el.Tag)
	for _, a := range c.attrs {
		w.WriteByte(' ')
		writeName(w, a.Space, a.Key)
		w.WriteString(`="`)
		escapeC14N(w, a.Value, true)
		w.WriteByte('"')
	}
	w.WriteByte('>')
	for _, t := range el.Child {
		if err := c.token(t); err != nil {
			return err
		}
	}
	if el == c.appendTo {
		for _, x := range c.appendix {
			if err := c.element(x); err != nil {
				return err
			}
		}
	}
	w.WriteString("</")
	writeName(w, el.Space, el.Tag)
	w.WriteByte('>')
	return nil
}

func (c *c14n) token(t etree.Token) error {
	switch t := t.(type) {
	case *etree.Element:
		if t == c.skip {
			return nil
		}
		return c.element(t)
	case *etree.CharData:
		if t.IsCData() {
			c.out.WriteString("<![CDATA[")
			c.out.WriteString(strings.ReplaceAll(t.Data, "]]>", "]]]]><![CDATA[>"))
			c.out.WriteString("]]>")
			return nil
		}
		escapeC14N(&c.out, t.Data, false)
	case *etree.Comment:
	default:
		// parseXML refuses processing instructions and directives inside
		// the root element.
		return fmt.Errorf("soap: canonicalization: unexpected %T", t)
	}
	return nil
}

func appendUnique(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

func writeName(w *bytes.Buffer, space, local string) {
	if space != "" {
		w.WriteString(space)
		w.WriteByte(':')
	}
	w.WriteString(local)
}

// escapeC14N escapes text (attr false) or an attribute value (attr true) as
// etree writes them with CanonicalText and CanonicalAttrVal.
func escapeC14N(w *bytes.Buffer, s string, attr bool) {
	last := 0
	for i := 0; i < len(s); {
		r, width := utf8.DecodeRuneInString(s[i:])
		i += width
		var esc string
		switch r {
		case '&':
			esc = "&amp;"
		case '<':
			esc = "&lt;"
		case '>':
			if attr {
				continue
			}
			esc = "&gt;"
		case '"':
			if !attr {
				continue
			}
			esc = "&quot;"
		case '\t':
			if !attr {
				continue
			}
			esc = "&#x9;"
		case '\n':
			if !attr {
				continue
			}
			esc = "&#xA;"
		case '\r':
			esc = "&#xD;"
		default:
			if !inCharacterRange(r) || r == utf8.RuneError && width == 1 {
				esc = "\uFFFD"
				break
			}
			continue
		}
		w.WriteString(s[last : i-width])
		w.WriteString(esc)
		last = i
	}
	w.WriteString(s[last:])
}

func inCharacterRange(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D || r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
}
