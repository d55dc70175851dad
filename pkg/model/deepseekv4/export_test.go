package deepseekv4

// Dequantize decodes the stored weight base ([out, in]) as the loader
// binds it and returns its values (tests compare them with the values the
// reference was computed from).
func (m *Model) Dequantize(base string, out, in int) ([]float32, error) {
	t, err := m.matrix(base, out, in)
	if err != nil {
		return nil, err
	}
	return t.M.Dequantize(), nil
}
