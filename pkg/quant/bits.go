package quant

import "fmt"

// PackBits packs codes (each < 2^bits) into a little-endian bit stream, least
// significant bit first, as MLX stores quantized weights: element i occupies
// stream bits [i·bits, i·bits+bits). len(codes)·bits must be a multiple of 8.
func PackBits(codes []uint8, bits int) ([]byte, error) {
	if bits < 1 || bits > 8 {
		return nil, fmt.Errorf("quant: cannot pack %d-bit codes", bits)
	}
	if len(codes)*bits%8 != 0 {
		return nil, fmt.Errorf("quant: %d %d-bit codes do not fill whole bytes", len(codes), bits)
	}
	out := make([]byte, len(codes)*bits/8)
	mask := uint8(1<<bits - 1)
	for i, c := range codes {
		if c&^mask != 0 {
			return nil, fmt.Errorf("quant: code %d at %d does not fit %d bits", c, i, bits)
		}
		bit := i * bits
		v := uint16(c) << (bit % 8)
		out[bit/8] |= uint8(v)
		if hi := uint8(v >> 8); hi != 0 {
			out[bit/8+1] |= hi
		}
	}
	return out, nil
}

// UnpackBits reads n bits-wide codes starting at element first from a packed
// stream into dst[:n]. The stream must hold them; callers validate sizes.
func UnpackBits(src []byte, bits, first int, dst []uint8) {
	mask := uint16(1<<bits - 1)
	bit := first * bits
	for i := range dst {
		b := bit / 8
		v := uint16(src[b])
		if b+1 < len(src) {
			v |= uint16(src[b+1]) << 8
		}
		dst[i] = uint8(v >> (bit % 8) & mask)
		bit += bits
	}
}
