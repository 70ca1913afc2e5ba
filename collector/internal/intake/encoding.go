package intake

import (
	"bytes"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
)

var (
	gzipReaders  sync.Pool // *gzip.Reader
	zlibReaders  sync.Pool // io.ReadCloser from zlib.NewReader, a zlib.Resetter
	flateReaders sync.Pool // io.ReadCloser from flate.NewReader, a flate.Resetter
)

// decompressor reads a body sent with Content-Encoding enc (gzip, x-gzip or
// deflate) from a pooled reader; done hands the reader back. HTTP's
// "deflate" is zlib-wrapped (RFC 9110), but some clients send raw deflate
// under that name, as browsers have long tolerated: a body whose first two
// bytes are no zlib header is read as raw deflate.
func decompressor(enc string, raw []byte) (r io.Reader, done func(), err error) {
	src := bytes.NewReader(raw)
	switch {
	case enc != "deflate":
		zr, _ := gzipReaders.Get().(*gzip.Reader)
		if zr == nil {
			zr, err = gzip.NewReader(src)
		} else {
			err = zr.Reset(src)
		}
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { gzipReaders.Put(zr) }, nil
	case zlibHeader(raw):
		if zr, ok := zlibReaders.Get().(io.ReadCloser); ok {
			if err := zr.(zlib.Resetter).Reset(src, nil); err != nil {
				return nil, nil, err
			}
			return zr, func() { zlibReaders.Put(zr) }, nil
		}
		zr, err := zlib.NewReader(src)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { zlibReaders.Put(zr) }, nil
	default:
		fr, ok := flateReaders.Get().(io.ReadCloser)
		if ok {
			if err := fr.(flate.Resetter).Reset(src, nil); err != nil {
				return nil, nil, err
			}
		} else {
			fr = flate.NewReader(src)
		}
		return fr, func() { flateReaders.Put(fr) }, nil
	}
}

// zlibHeader says whether b starts with a zlib header (RFC 1950): method 8
// (deflate), a window of at most 32 KiB, and a check value that makes the
// first two bytes a multiple of 31. Raw deflate data rarely passes all
// three.
func zlibHeader(b []byte) bool {
	return len(b) >= 2 && b[0]&0x0f == 8 && b[0]>>4 <= 7 && (uint16(b[0])<<8|uint16(b[1]))%31 == 0
}
