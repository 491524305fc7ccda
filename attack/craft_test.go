package attack

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"strconv"
	"testing"
)

// The attack bodies are generated, never committed: each is small on the
// wire and large once the server decodes it.

// inferJSON is a KServe v2 JSON infer request for the tiny model's input
// with n zeros as its data ("0,0,...": 2 bytes a number) and the shape
// given, which need not match n.
func inferJSON(n int, shape []int) []byte {
	b := []byte(`{"inputs":[{"name":"input","datatype":"FP32","shape":[`)
	for i, d := range shape {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(d), 10)
	}
	b = append(b, `],"data":[`...)
	b = append(b, bytes.Repeat([]byte("0,"), n)...)
	b[len(b)-1] = ']' // the last comma
	return append(b, "}]}"...)
}

// gzipped compresses b at the best ratio.
func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// gzipBomb is a gzip stream of n zero bytes (about n/1000 on the wire),
// written a MiB at a time so the test never holds n bytes.
func gzipBomb(n int) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zero := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, len(zero))
		zw.Write(zero[:k])
		n -= k
	}
	zw.Close()
	return buf.Bytes()
}

// cmykProgressiveJPEG is a w x h four-component (Adobe CMYK) progressive
// JPEG written marker by marker: one interleaved DC-first scan in which
// every 8x8 block of every component is a zero difference coded in one
// bit. The file is w*h/128 bytes; a decoder that keeps the progressive
// coefficients holds 4 components x 64 int32 per block, 16 bytes a pixel,
// before the CMYK pixels themselves.
func cmykProgressiveJPEG(w, h int) []byte {
	var b bytes.Buffer
	marker := func(m byte, payload []byte) {
		b.Write([]byte{0xFF, m, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)})
		b.Write(payload)
	}
	b.Write([]byte{0xFF, 0xD8}) // SOI
	// APP14 "Adobe": version 100, flags 0, 0, transform 0 (CMYK, not YCCK).
	marker(0xEE, []byte{'A', 'd', 'o', 'b', 'e', 0, 100, 0, 0, 0, 0, 0})
	// DQT: table 0, 8-bit precision, every step 1.
	marker(0xDB, append([]byte{0x00}, bytes.Repeat([]byte{1}, 64)...))
	// SOF2 (progressive, Huffman): 8 bits, h, w, 4 components 1x1 on table 0.
	sof := []byte{8, byte(h >> 8), byte(h), byte(w >> 8), byte(w), 4}
	for c := byte(1); c <= 4; c++ {
		sof = append(sof, c, 0x11, 0)
	}
	marker(0xC2, sof)
	// DHT: DC table 0 with a single code, "0" (1 bit), for category 0.
	marker(0xC4, []byte{0x00, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00})
	// SOS: all four components, DC table 0; spectral 0..0, no approximation.
	sos := []byte{4}
	for c := byte(1); c <= 4; c++ {
		sos = append(sos, c, 0x00)
	}
	marker(0xDA, append(sos, 0, 0, 0))
	bits := ((w + 7) / 8) * ((h + 7) / 8) * 4
	b.Write(make([]byte, bits/8)) // zero bits: a zero difference per block
	if r := bits % 8; r != 0 {
		b.WriteByte(0xFF >> r) // r zero bits, then 1s to pad the byte
	}
	b.Write([]byte{0xFF, 0xD9}) // EOI
	return b.Bytes()
}

// png16 is a w x h 16-bit RGBA PNG (colour type 6, depth 16) of opaque
// white, written chunk by chunk with the rows deflated one at a time: a
// decoder holds 8 bytes a pixel, the file is about 1/750 of that.
func png16(w, h int) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(data)))
		b.Write(n[:])
		crc := crc32.NewIEEE()
		crc.Write([]byte(typ))
		crc.Write(data)
		b.WriteString(typ)
		b.Write(data)
		binary.BigEndian.PutUint32(n[:], crc.Sum32())
		b.Write(n[:])
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], uint32(w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(h))
	ihdr[8], ihdr[9] = 16, 6 // depth 16, RGBA; compression, filter, interlace 0
	chunk("IHDR", ihdr)
	var z bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&z, zlib.BestSpeed)
	row := bytes.Repeat([]byte{0xFF}, 1+8*w)
	row[0] = 0 // filter: none
	for range h {
		zw.Write(row)
	}
	zw.Close()
	for data := z.Bytes(); len(data) > 0; {
		k := min(len(data), 1<<20)
		chunk("IDAT", data[:k])
		data = data[k:]
	}
	chunk("IEND", nil)
	return b.Bytes()
}

// smallJPEG is an ordinary w x h baseline JPEG of a gradient, for control
// and overload requests to classify.
func smallJPEG(w, h int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x + y), 255})
		}
	}
	var b bytes.Buffer
	jpeg.Encode(&b, img, &jpeg.Options{Quality: 90})
	return b.Bytes()
}

// The crafted files are what they claim to be: Go's own decoders read the
// small versions as CMYK and 16-bit RGBA, the JSON has the numbers, the
// bomb inflates to its size. Runs under -short: no server.
func TestCraftedBodies(t *testing.T) {
	j := cmykProgressiveJPEG(61, 37)
	cfg, format, err := image.DecodeConfig(bytes.NewReader(j))
	if err != nil || format != "jpeg" || cfg.Width != 61 || cfg.Height != 37 || cfg.ColorModel != color.CMYKModel {
		t.Errorf("CMYK JPEG config: %v %s %+v", err, format, cfg)
	}
	img, err := jpeg.Decode(bytes.NewReader(j))
	if err != nil {
		t.Fatalf("CMYK JPEG: %v", err)
	}
	if _, ok := img.(*image.CMYK); !ok || img.Bounds().Dx() != 61 {
		t.Errorf("CMYK JPEG decodes to %T %v", img, img.Bounds())
	}

	p := png16(33, 17)
	img, err = png.Decode(bytes.NewReader(p))
	if err != nil {
		t.Fatalf("16-bit PNG: %v", err)
	}
	if m, ok := img.(*image.NRGBA64); !ok || m.Bounds().Dx() != 33 || m.NRGBA64At(5, 5) != (color.NRGBA64{0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF}) {
		t.Errorf("16-bit PNG decodes to %T %v", img, img.Bounds())
	}

	var req struct {
		Inputs []struct {
			Shape []int
			Data  []float32
		}
	}
	if err := json.Unmarshal(inferJSON(1000, []int{1, 3, 224, 224}), &req); err != nil || len(req.Inputs) != 1 ||
		len(req.Inputs[0].Data) != 1000 || len(req.Inputs[0].Shape) != 4 {
		t.Errorf("infer JSON: %v %+v", err, req)
	}

	bomb := gzipBomb(3<<20 + 5)
	zr, err := gzip.NewReader(bytes.NewReader(bomb))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for buf := make([]byte, 1<<16); ; {
		k, err := zr.Read(buf)
		n += int64(k)
		if err != nil {
			break
		}
	}
	if n != 3<<20+5 || len(bomb) > 8<<10 {
		t.Errorf("bomb: %d bytes inflate to %d", len(bomb), n)
	}
}
