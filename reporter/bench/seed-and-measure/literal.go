package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/aluminiapp/pipeline/lib/chschema"
)

// inline returns sql with each `?` outside quotes replaced by its argument
// as a ClickHouse literal, so clickhouse-client runs exactly the statement
// the reporter sends with bound parameters (which is how clickhouse-go
// binds them for the native protocol too).
func inline(sql string, args []any) (string, error) {
	var b strings.Builder
	n := 0
	var quote byte // the open quote character, or 0
	for i := 0; i < len(sql); i++ {
		c := sql[i]
		switch {
		case quote != 0:
			b.WriteByte(c)
			if c == '\\' && i+1 < len(sql) {
				i++
				b.WriteByte(sql[i])
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '`' || c == '"':
			quote = c
			b.WriteByte(c)
		case c == '?':
			if n == len(args) {
				return "", fmt.Errorf("more placeholders than the %d arguments", len(args))
			}
			lit, err := literal(args[n])
			if err != nil {
				return "", fmt.Errorf("argument %d: %w", n, err)
			}
			b.WriteString(lit)
			n++
		default:
			b.WriteByte(c)
		}
	}
	if quote != 0 {
		return "", fmt.Errorf("unterminated quote %c", quote)
	}
	if n != len(args) {
		return "", fmt.Errorf("%d placeholders for %d arguments", n, len(args))
	}
	return b.String(), nil
}

// literal renders one bound value the way ClickHouse reads it back.
func literal(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return chschema.QuoteString(x), nil
	case int:
		return strconv.Itoa(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	default:
		return "", fmt.Errorf("no literal form for %T", v)
	}
}
