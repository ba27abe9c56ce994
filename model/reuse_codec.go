package model

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"unsafe"
)

// The encoding of Reuse's decoded files: every exported field of File and
// what it holds, in field order, keeping what encoding/gob would lose (a
// pointer to false is not a missing pointer: `pfs = false` is not `pfs`
// unset). Strings and lengths are uvarint-prefixed; a pointer, a slice and
// an any value start with a tag byte. A Secret is never encoded (Reuse
// keeps no file with one); its place holds nothing.

var (
	secretType = reflect.TypeOf(Secret{})
	fileType   = reflect.TypeOf(File{})
	// fileSchema describes File's fields as the encoding walks them:
	// part of the salt, so that data a program with other types wrote is
	// not read.
	fileSchema = schemaOf(fileType)
)

var errReuseData = errors.New("damaged reuse data")

func schemaOf(t reflect.Type) string {
	var b strings.Builder
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		switch {
		case t == secretType:
			b.WriteString("secret")
			return
		case t.Kind() == reflect.Struct:
			b.WriteString("{")
			for i := 0; i < t.NumField(); i++ {
				f := t.Field(i)
				if !f.IsExported() {
					continue
				}
				b.WriteString(f.Name + ":")
				walk(f.Type)
				b.WriteString(";")
			}
			b.WriteString("}")
		case t.Kind() == reflect.Pointer:
			b.WriteString("*")
			walk(t.Elem())
		case t.Kind() == reflect.Slice:
			b.WriteString("[]")
			walk(t.Elem())
		default:
			b.WriteString(t.Kind().String())
		}
	}
	walk(t)
	return b.String()
}

// any values: the tags of what Reuse keeps (see reusable).
const (
	anyNil byte = iota
	anyString
	anyInt
)

// fieldsOf caches, per struct type, the indexes of its exported fields
// in order: asking reflect for each field of each value was a third of
// reading back a 5,000-rule policy's chunks.
var fieldsOf sync.Map // reflect.Type -> []int

func exportedFields(t reflect.Type) []int {
	if f, ok := fieldsOf.Load(t); ok {
		return f.([]int)
	}
	var idx []int
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).IsExported() {
			idx = append(idx, i)
		}
	}
	fieldsOf.Store(t, idx)
	return idx
}

func appendValue(b []byte, v reflect.Value) ([]byte, error) {
	t := v.Type()
	switch {
	case t == secretType:
		if !v.Interface().(Secret).IsZero() {
			return nil, errSecretNotKept
		}
		return b, nil
	}
	switch t.Kind() {
	case reflect.Struct:
		var err error
		for _, i := range exportedFields(t) {
			if b, err = appendValue(b, v.Field(i)); err != nil {
				return nil, err
			}
		}
		return b, nil
	case reflect.String:
		b = binary.AppendUvarint(b, uint64(v.Len()))
		return append(b, v.String()...), nil
	case reflect.Bool:
		if v.Bool() {
			return append(b, 1), nil
		}
		return append(b, 0), nil
	case reflect.Int64, reflect.Int:
		return binary.AppendVarint(b, v.Int()), nil
	case reflect.Pointer:
		if v.IsNil() {
			return append(b, 0), nil
		}
		return appendValue(append(b, 1), v.Elem())
	case reflect.Slice:
		if v.IsNil() {
			return append(b, 0), nil
		}
		b = append(b, 1)
		b = binary.AppendUvarint(b, uint64(v.Len()))
		var err error
		for i := 0; i < v.Len(); i++ {
			if b, err = appendValue(b, v.Index(i)); err != nil {
				return nil, err
			}
		}
		return b, nil
	case reflect.Interface:
		if v.IsNil() {
			return append(b, anyNil), nil
		}
		switch x := v.Elem().Interface().(type) {
		case string:
			b = append(b, anyString)
			b = binary.AppendUvarint(b, uint64(len(x)))
			return append(b, x...), nil
		case int64:
			return binary.AppendVarint(append(b, anyInt), x), nil
		}
		return nil, fmt.Errorf("reuse: a %T is not kept", v.Elem().Interface())
	}
	return nil, fmt.Errorf("reuse: cannot encode a %s", t)
}

// reuseReader reads what appendValue wrote. The strings it reads are
// views of its bytes, not copies (at 5,001 files, a change's tens of
// thousands of small allocations): the bytes are NewReuse's data, which
// never changes and is kept as long as the results are.
type reuseReader struct {
	b   []byte
	err error
}

func (r *reuseReader) fail() {
	if r.err == nil {
		r.err = errReuseData
	}
	r.b = nil
}

func (r *reuseReader) byte() byte {
	if len(r.b) == 0 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reuseReader) uvarint() uint64 {
	n, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[k:]
	return n
}

func (r *reuseReader) varint() int64 {
	n, k := binary.Varint(r.b)
	if k <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[k:]
	return n
}

func (r *reuseReader) string() string {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return ""
	}
	if n == 0 {
		return ""
	}
	s := unsafe.String(&r.b[0], int(n))
	r.b = r.b[n:]
	return s
}

// length reads a slice's length: each element takes at least a byte, so
// one longer than what is left is damage, not an allocation to make.
func (r *reuseReader) length() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return 0
	}
	return int(n)
}

func (r *reuseReader) value(v reflect.Value) {
	if r.err != nil {
		return
	}
	t := v.Type()
	if t == secretType {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		for _, i := range exportedFields(t) {
			if r.err != nil {
				break
			}
			r.value(v.Field(i))
		}
	case reflect.String:
		v.SetString(r.string())
	case reflect.Bool:
		switch r.byte() {
		case 0:
		case 1:
			v.SetBool(true)
		default:
			r.fail()
		}
	case reflect.Int64, reflect.Int:
		v.SetInt(r.varint())
	case reflect.Pointer:
		switch r.byte() {
		case 0:
		case 1:
			p := reflect.New(t.Elem())
			r.value(p.Elem())
			v.Set(p)
		default:
			r.fail()
		}
	case reflect.Slice:
		switch r.byte() {
		case 0:
		case 1:
			n := r.length()
			s := reflect.MakeSlice(t, n, n)
			for i := 0; i < n && r.err == nil; i++ {
				r.value(s.Index(i))
			}
			v.Set(s)
		default:
			r.fail()
		}
	case reflect.Interface:
		switch r.byte() {
		case anyNil:
		case anyString:
			v.Set(reflect.ValueOf(r.string()))
		case anyInt:
			v.Set(reflect.ValueOf(r.varint()))
		default:
			r.fail()
		}
	default:
		r.fail()
	}
}

// encodeFile appends f's encoding to b.
func encodeFile(b []byte, f *File) ([]byte, error) {
	return appendValue(b, reflect.ValueOf(f).Elem())
}

// appendHeaders appends a kept file's headers' lines (kept.headers): their
// number, then each path and line, in path order so that the same
// headers encode the same.
func appendHeaders(b []byte, h map[string]int) []byte {
	paths := make([]string, 0, len(h))
	for p := range h {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	b = binary.AppendUvarint(b, uint64(len(paths)))
	for _, p := range paths {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
		b = binary.AppendUvarint(b, uint64(h[p]))
	}
	return b
}

// headers reads what appendHeaders wrote (never nil: a file without a
// table has none).
func (r *reuseReader) headers() map[string]int {
	n := r.length()
	h := make(map[string]int, n)
	for i := 0; i < n && r.err == nil; i++ {
		p := r.string()
		l := r.uvarint()
		if l > math.MaxInt32 {
			r.fail()
			break
		}
		h[p] = int(l)
	}
	return h
}

// decodeFile reads a File encodeFile wrote.
func (r *reuseReader) file() *File {
	f := &File{}
	r.value(reflect.ValueOf(f).Elem())
	if r.err != nil {
		return nil
	}
	return f
}
