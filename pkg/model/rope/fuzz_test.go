package rope

import "testing"

// FuzzFromConfig: any config text is either rejected or gives parameters
// whose frequencies are computed or rejected, without panicking.
func FuzzFromConfig(f *testing.F) {
	f.Add([]byte(`{"rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}}`), 128)
	f.Add([]byte(`{"rope_theta": 150000, "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "original_max_position_embeddings": 4096}}`), 64)
	f.Add([]byte(`{"rope_parameters": {"rope_type": "proportional", "rope_theta": 1e6, "partial_rotary_factor": 0.25}}`), 256)
	f.Add([]byte(`{"rope_scaling": {"type": "linear", "factor": 0}}`), 16)
	f.Fuzz(func(t *testing.T, cfg []byte, headDim int) {
		p, err := FromConfig(cfg, headDim%4097)
		if err != nil {
			return
		}
		if p.Dims > 1<<16 {
			return // absurd sizes are for the config validator to refuse
		}
		_, _, _ = p.InvFreq()
	})
}
