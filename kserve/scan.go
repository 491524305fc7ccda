package kserve

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// The request JSON is read in place, in two kinds of pass over the bytes
// of the body, and never becomes a tree:
//
//   - validate checks the whole header once: JSON syntax, with numbers
//     read as loosely as fastjson did (so that "data":[NaN] is an element
//     error, not a syntax error), strings strictly, nesting at most
//     maxDepth deep. It allocates nothing and records where the top-level
//     members start and how many inputs and outputs there are.
//   - everything after that walks bytes already known to be valid
//     (skipValue, objectIter, arrayIter) and converts "data" straight
//     into the tensor's buffer (data.go).

// maxRank is the most dimensions a shape may have (numpy's limit). It
// bounds the nesting of "data", the storage of a shape and the length of
// the error messages that print one.
const maxRank = 64

// maxDepth bounds the nesting of arrays and objects in the request JSON:
// the request object, "inputs", an input and a "data" nested maxRank
// deep, with room to spare. A body of 100,000 opening brackets is
// refused at the 129th, with no deep recursion.
const maxDepth = 2 * maxRank

// Byte classes for the scanning loops.
const (
	classWS     = 1 << iota // JSON whitespace
	classNum                // may continue a number token: 0-9 + - . e E
	classStr                // ends the plain run of a string: " \ and controls
	classStruct             // matters when skipping a container: [ ] { } "
)

var byteClass = func() (t [256]uint8) {
	for _, c := range " \t\n\r" {
		t[c] |= classWS
	}
	for _, c := range "0123456789+-.eE" {
		t[c] |= classNum
	}
	for c := range 0x20 {
		t[c] |= classStr
	}
	t['"'] |= classStr | classStruct
	t['\\'] |= classStr
	for _, c := range "[]{}" {
		t[c] |= classStruct
	}
	return t
}()

// topMembers is what validate records of the request object: where the
// values of its members start (the first of each name, as fastjson's
// Get had it), -1 when absent, and the lengths of "inputs" and
// "outputs" when they are arrays.
type topMembers struct {
	id, parameters, inputs, outputs int
	nInputs, nOutputs               int
}

// validate checks that b holds one JSON value and nothing else but
// whitespace, and returns where the value starts. When the value is an
// object, top receives its members. The error text says what was wrong
// and at which offset.
func validate(b []byte, top *topMembers) (int, error) {
	*top = topMembers{id: -1, parameters: -1, inputs: -1, outputs: -1}
	c := checker{b: b}
	start := skipWS(b, 0)
	if start == len(b) {
		return start, errorString("cannot parse JSON: empty, expected a JSON object")
	}
	var end int
	var err error
	if b[start] == '{' {
		end, err = c.object(start, 1, top)
	} else {
		end, err = c.value(start, 0)
	}
	if err != nil {
		return start, err
	}
	if end = skipWS(b, end); end != len(b) {
		return start, errorString("unexpected tail at offset " + strconv.Itoa(end) + ": " + near(b, end))
	}
	return start, nil
}

// checker is the validating pass over b.
type checker struct {
	b []byte
}

func (c *checker) fail(i int, what string) error {
	if i >= len(c.b) {
		return errorString("cannot parse JSON: " + what + " at offset " + strconv.Itoa(i) + " (end of input)")
	}
	return errorString("cannot parse JSON: " + what + " at offset " + strconv.Itoa(i) + ": " + near(c.b, i))
}

// near quotes up to 32 bytes of b from i, for error messages.
func near(b []byte, i int) string {
	return strconv.Quote(clip(b[i:], 32))
}

// clip returns at most n bytes of b as a string, with "..." when cut;
// error messages quote request text through it so that their size does
// not grow with the body.
func clip(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "..."
}

// value checks the value at b[i] (not a top-level object) inside
// depth enclosing containers, and returns the offset after it.
func (c *checker) value(i, depth int) (int, error) {
	b := c.b
	if i >= len(b) {
		return i, c.fail(i, "unexpected end, expected a value")
	}
	switch b[i] {
	case '{':
		return c.object(i, depth+1, nil)
	case '[':
		end, _, err := c.array(i, depth+1)
		return end, err
	case '"':
		return c.str(i)
	case 't':
		return c.literal(i, "true")
	case 'f':
		return c.literal(i, "false")
	case 'n':
		if bytes.HasPrefix(b[i:], []byte("null")) {
			return i + 4, nil
		}
	}
	if j := numberEnd(b, i); j > i {
		return j, nil
	}
	return i, c.fail(i, "unexpected character, expected a value")
}

func (c *checker) literal(i int, lit string) (int, error) {
	if !bytes.HasPrefix(c.b[i:], []byte(lit)) {
		return i, c.fail(i, "unexpected character, expected a value")
	}
	return i + len(lit), nil
}

// array checks the array at b[i], the depth-th container, and returns
// the offset after it and its length.
func (c *checker) array(i, depth int) (int, int, error) {
	if depth > maxDepth {
		return i, 0, c.tooDeep(i)
	}
	b := c.b
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, 0, nil
	}
	n := 0
	for {
		// Numbers, the bulk of a request, are checked inline.
		if i < len(b) && (b[i] >= '0' && b[i] <= '9' || b[i] == '-') {
			j := i + 1
			for j < len(b) && byteClass[b[j]]&classNum != 0 {
				if b[j] == '.' { // the fraction, eight digits at a time
					for j+9 <= len(b) && eightDigits(binary.LittleEndian.Uint64(b[j+1:])) {
						j += 8
					}
				}
				j++
			}
			if j == i+1 && b[i] == '-' {
				j = numberEnd(b, i) // "-inf", "-nan" or not a number
			}
			if j == i {
				return i, 0, c.fail(i, "unexpected character, expected a value")
			}
			i = j
		} else {
			var err error
			if i, err = c.value(i, depth); err != nil {
				return i, 0, err
			}
		}
		n++
		if i < len(b) && b[i] == ',' { // the common case: no whitespace
			i = skipWS(b, i+1)
			continue
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return i, 0, c.fail(i, "unexpected end of array, expected ',' or ']'")
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case ']':
			return i + 1, n, nil
		default:
			return i, 0, c.fail(i, "expected ',' or ']' after array element")
		}
	}
}

// object checks the object at b[i], the depth-th container. When top is
// not nil (the request object) it records the members the parser reads.
func (c *checker) object(i, depth int, top *topMembers) (int, error) {
	if depth > maxDepth {
		return i, c.tooDeep(i)
	}
	b := c.b
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return i, c.fail(i, `expected '"' to start an object key`)
		}
		keyEnd, err := c.str(i)
		if err != nil {
			return i, err
		}
		key := b[i+1 : keyEnd-1]
		i = skipWS(b, keyEnd)
		if i >= len(b) || b[i] != ':' {
			return i, c.fail(i, "expected ':' after object key")
		}
		i = skipWS(b, i+1)
		start := i
		if top != nil {
			var kb [24]byte
			switch string(unescapeKey(kb[:0], key)) {
			case "id":
				top.id = first(top.id, start)
			case "parameters":
				top.parameters = first(top.parameters, start)
			case "inputs":
				if top.inputs < 0 && i < len(b) && b[i] == '[' {
					top.inputs = start
					i, top.nInputs, err = c.array(i, depth+1)
				} else {
					top.inputs = first(top.inputs, start)
				}
			case "outputs":
				if top.outputs < 0 && i < len(b) && b[i] == '[' {
					top.outputs = start
					i, top.nOutputs, err = c.array(i, depth+1)
				} else {
					top.outputs = first(top.outputs, start)
				}
			}
			if err != nil {
				return i, err
			}
		}
		if i == start {
			if i, err = c.value(i, depth); err != nil {
				return i, err
			}
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return i, c.fail(i, "unexpected end of object, expected ',' or '}'")
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return i + 1, nil
		default:
			return i, c.fail(i, "expected ',' or '}' after object value")
		}
	}
}

// first returns old when a member of that name was already seen (-1
// means not), else at.
func first(old, at int) int {
	if old >= 0 {
		return old
	}
	return at
}

func (c *checker) tooDeep(i int) error {
	return errorString("cannot parse JSON: arrays and objects nested deeper than " + strconv.Itoa(maxDepth) + " levels at offset " + strconv.Itoa(i))
}

// str checks the string at b[i] (strictly: no raw control characters,
// only JSON's escapes) and returns the offset after its closing quote.
func (c *checker) str(i int) (int, error) {
	b := c.b
	for j := i + 1; j < len(b); j++ {
		ch := b[j]
		if byteClass[ch]&classStr == 0 {
			continue
		}
		switch ch {
		case '"':
			return j + 1, nil
		case '\\':
			if j+1 >= len(b) {
				return j, c.fail(j, "unterminated escape in string")
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j++
			case 'u':
				if j+6 > len(b) || !isHex4(b[j+2:j+6]) {
					return j, c.fail(j, `expected four hex digits after \u in string`)
				}
				j += 5
			default:
				return j, c.fail(j, "invalid escape in string")
			}
		default:
			return j, c.fail(j, "control character in string (escape it)")
		}
	}
	return len(b), c.fail(i, "unterminated string")
}

func isHex4(b []byte) bool {
	for _, c := range b[:4] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// numberEnd returns the end of the number token at b[i], or i when there
// is none. Tokens are fastjson's: a run of 0-9 + - . e E, or inf or nan
// (any case) after an optional sign. Whether a token is a JSON number is
// checked where its value is used (isJSONNumber, parseFP32), so that
// the error names the element.
func numberEnd(b []byte, i int) int {
	j := i
	for j < len(b) && byteClass[b[j]]&classNum != 0 {
		j++
	}
	if j == len(b) || j > i+1 || j == i+1 && b[i] != '-' && b[i] != '+' {
		return j
	}
	if j+3 <= len(b) {
		w := string(b[j : j+3])
		if strings.EqualFold(w, "inf") || strings.EqualFold(w, "nan") {
			return j + 3
		}
	}
	return i
}

// The helpers below walk JSON that validate has accepted; on other input
// they may return nonsense offsets (never index out of range: Go checks).

// skipWS returns the offset of the first non-whitespace byte at or
// after i.
func skipWS(b []byte, i int) int {
	for i < len(b) && byteClass[b[i]]&classWS != 0 {
		i++
	}
	return i
}

// skipValue returns the offset after the valid value at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '[', '{':
		return skipContainer(b, i)
	case 't', 'n':
		if b[i] == 'n' && !bytes.HasPrefix(b[i:], []byte("null")) {
			return numberEnd(b, i) // nan
		}
		return i + 4
	case 'f':
		return i + 5
	}
	return numberEnd(b, i)
}

// skipString returns the offset after the valid string at b[i].
func skipString(b []byte, i int) int {
	for j := i + 1; ; {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return len(b)
		}
		q := j + k
		// The quote ends the string unless an odd run of backslashes
		// precedes it.
		bs := 0
		for q-1-bs > i && b[q-1-bs] == '\\' {
			bs++
		}
		if bs%2 == 0 {
			return q + 1
		}
		j = q + 1
	}
}

// skipContainer returns the offset after the valid array or object at
// b[i].
func skipContainer(b []byte, i int) int {
	depth, j := 0, i
	if b[i] == '[' {
		// Arrays of numbers, flat or nested (the usual "data"), a stretch
		// at a time: up to the next ']', counting the '[' on the way, as
		// long as no string or object comes.
		for {
			k := bytes.IndexByte(b[j:], ']')
			if k < 0 {
				break
			}
			in := b[j : j+k]
			if bytes.IndexByte(in, '"') >= 0 || bytes.IndexByte(in, '{') >= 0 {
				break
			}
			depth += bytes.Count(in, openBracket) - 1
			j += k + 1
			if depth == 0 {
				return j
			}
		}
	}
	for ; j < len(b); j++ {
		c := b[j]
		if byteClass[c]&classStruct == 0 {
			continue
		}
		switch c {
		case '[', '{':
			depth++
		case ']', '}':
			depth--
			if depth == 0 {
				return j + 1
			}
		case '"':
			j = skipString(b, j) - 1
		}
	}
	return len(b)
}

var openBracket = []byte{'['}

// countRest counts the elements of a valid array from the element at
// b[i] to its closing bracket.
func countRest(b []byte, i int) int {
	n := 0
	for {
		i = skipWS(b, skipValue(b, i))
		n++
		if i >= len(b) || b[i] != ',' {
			return n
		}
		i = skipWS(b, i+1)
	}
}

// objectIter walks the members of a valid object.
type objectIter struct {
	b []byte
	i int
}

// newObjectIter starts at the object at b[i].
func newObjectIter(b []byte, i int) objectIter {
	return objectIter{b: b, i: i + 1}
}

// next returns the next member's raw key (between the quotes, escapes
// and all) and the offsets of its value, or ok false at the end.
func (it *objectIter) next() (key []byte, start, end int, ok bool) {
	b := it.b
	i := skipWS(b, it.i)
	if i < len(b) && b[i] == ',' {
		i = skipWS(b, i+1)
	}
	if i >= len(b) || b[i] != '"' {
		return nil, 0, 0, false
	}
	keyEnd := skipString(b, i)
	key = b[i+1 : keyEnd-1]
	start = skipWS(b, skipWS(b, keyEnd)+1) // past ':'
	end = skipValue(b, start)
	it.i = end
	return key, start, end, true
}

// end returns the offset after the object, once next has returned
// ok false.
func (it *objectIter) end() int {
	return skipWS(it.b, it.i) + 1
}

// arrayIter walks the elements of a valid array.
type arrayIter struct {
	b []byte
	i int
}

// newArrayIter starts at the array at b[i].
func newArrayIter(b []byte, i int) arrayIter {
	return arrayIter{b: b, i: i + 1}
}

// next returns the offsets of the next element, or ok false at the end.
func (it *arrayIter) next() (start, end int, ok bool) {
	start, ok = it.nextStart()
	if !ok {
		return 0, 0, false
	}
	it.i = skipValue(it.b, start)
	return start, it.i, true
}

// nextStart returns where the next element starts, or ok false at the
// end, without looking further: the caller, which reads the element,
// says where it ended with skipTo.
func (it *arrayIter) nextStart() (start int, ok bool) {
	b := it.b
	i := skipWS(b, it.i)
	if i < len(b) && b[i] == ',' {
		i = skipWS(b, i+1)
	}
	if i >= len(b) || b[i] == ']' {
		return 0, false
	}
	it.i = i
	return i, true
}

// skipTo continues after the element that ends at end.
func (it *arrayIter) skipTo(end int) {
	it.i = end
}

// kindAt names the type of the valid value at b[i] as fastjson did:
// object, array, string, number, true, false or null.
func kindAt(b []byte, i int) string {
	if i >= len(b) {
		return "nothing"
	}
	switch b[i] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't':
		return "true"
	case 'f':
		return "false"
	case 'n':
		if bytes.HasPrefix(b[i:], []byte("null")) {
			return "null"
		}
	}
	return "number"
}

// article names a kind for an element message: "an array", "a number",
// "null", "true".
func article(kind string) string {
	switch kind {
	case "array", "object":
		return "an " + kind
	case "null", "true", "false":
		return kind
	}
	return "a " + kind
}

// rawString returns the raw contents of the valid string at b[i..end),
// without the quotes.
func rawString(b []byte, i, end int) []byte {
	return b[i+1 : end-1]
}

// unescapeKey appends the decoded raw key to dst (a small stack buffer);
// keys without escapes are returned as they are.
func unescapeKey(dst, raw []byte) []byte {
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw
	}
	if len(raw) > 6*cap(dst) {
		return nil // cannot decode to a known key
	}
	return appendUnescaped(dst, raw)
}

// keyIs reports whether raw key decodes to name.
func keyIs(raw []byte, name string) bool {
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw) == name
	}
	var kb [24]byte
	return string(unescapeKey(kb[:0], raw)) == name
}

// unescaped returns the decoded contents of a valid raw string: raw
// itself when it has no escapes, else a new slice.
func unescaped(raw []byte) []byte {
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw
	}
	return appendUnescaped(make([]byte, 0, len(raw)), raw)
}

// appendUnescaped appends the decoded contents of a valid JSON string to
// dst. A \u escape of a lone surrogate becomes U+FFFD, as encoding/json
// has it. The result is never longer than raw.
func appendUnescaped(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		k := bytes.IndexByte(raw[i:], '\\')
		if k < 0 {
			return append(dst, raw[i:]...)
		}
		dst = append(dst, raw[i:i+k]...)
		i += k
		switch c := raw[i+1]; c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := rune(hex4(raw[i+2:]))
			i += 6
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					r2 = utf16.DecodeRune(r, rune(hex4(raw[i+2:])))
				}
				if r2 != utf8.RuneError {
					i += 6
				}
				r = r2
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // " \ /
			dst = append(dst, c)
		}
		i += 2
	}
	return dst
}

// hex4 decodes four valid hex digits.
func hex4(b []byte) uint16 {
	var v uint16
	for _, c := range b[:4] {
		switch {
		case c <= '9':
			c -= '0'
		case c >= 'a':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		v = v<<4 | uint16(c)
	}
	return v
}
