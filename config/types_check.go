package config

import (
	"reflect"
	"strconv"

	"github.com/BurntSushi/toml"
)

var unmarshalerType = reflect.TypeOf((*toml.Unmarshaler)(nil)).Elem()

// checkTypes walks a generically decoded document along the Config type and
// reports each value whose TOML type cannot go into its field, deleting it
// from the document so that the rest decodes. Keys Config does not have are
// left alone (the decoder reports them as unknown). It returns false when v
// itself does not fit t.
func checkTypes(v any, t reflect.Type, path string, report func(key, msg string)) bool {
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return true // Duration and Size check their own values
	}
	mismatch := func(want string) bool {
		report(path, "must be "+want+", not "+tomlTypeName(v))
		return false
	}
	switch t.Kind() {
	case reflect.Pointer:
		return checkTypes(v, t.Elem(), path, report)
	case reflect.String:
		if _, ok := v.(string); !ok {
			return mismatch("a string")
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			// nginx's on/off, keepalived's yes/no: TOML writes true/false.
			return mismatch("a boolean (true or false, without quotes)")
		}
	case reflect.Int, reflect.Int64, reflect.Int32:
		if _, ok := v.(int64); !ok {
			return mismatch("an integer")
		}
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return mismatch("a table")
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := tomlName(f)
			if name == "" {
				continue
			}
			if val, ok := m[name]; ok && !checkTypes(val, f.Type, joinPath(path, name), report) {
				delete(m, name)
			}
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return mismatch("a table")
		}
		for _, k := range sortedKeys(m) {
			if !checkTypes(m[k], t.Elem(), joinPath(path, k), report) {
				delete(m, k)
			}
		}
	case reflect.Slice:
		var elems []any
		switch x := v.(type) {
		case []any:
			elems = x
		case []map[string]any:
			for _, e := range x {
				elems = append(elems, e)
			}
		default:
			return mismatch("an array")
		}
		fits := true
		for i, e := range elems {
			if !checkTypes(e, t.Elem(), path+"["+strconv.Itoa(i)+"]", report) {
				fits = false
			}
		}
		return fits // an element that does not fit drops the whole array
	}
	return true
}

func tomlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name := f.Tag.Get("toml")
	for i := 0; i < len(name); i++ {
		if name[i] == ',' {
			name = name[:i]
			break
		}
	}
	if name == "-" {
		return ""
	}
	return name
}
