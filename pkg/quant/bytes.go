package quant

import (
	"encoding/binary"
	"math"
)

// Little-endian element access that works at any alignment.

func u16At(b []byte, i int) uint16 { return binary.LittleEndian.Uint16(b[2*i:]) }

func f32At(b []byte, i int) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])) }

// F32Bytes encodes v as little-endian f32 bytes.
func F32Bytes(v []float32) []byte {
	out := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
	}
	return out
}

// BF16Bytes encodes v as little-endian bf16 bytes (round to nearest even).
func BF16Bytes(v []float32) []byte {
	out := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(out[2*i:], F32ToBF16(x))
	}
	return out
}

// F16Bytes encodes v as little-endian f16 bytes (round to nearest even).
func F16Bytes(v []float32) []byte {
	out := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(out[2*i:], F32ToF16(x))
	}
	return out
}

// DecodeF32 decodes little-endian f32 bytes.
func DecodeF32(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = f32At(b, i)
	}
	return out
}

// Encode stores v in a plain format (F32, F16 or BF16).
func Encode(k Kind, v []float32) []byte {
	switch k {
	case F16:
		return F16Bytes(v)
	case BF16:
		return BF16Bytes(v)
	}
	return F32Bytes(v)
}
