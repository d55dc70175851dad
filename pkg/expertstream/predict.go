package expertstream

import (
	"slices"
)

// DefaultSpecThreshold is the estimated probability above which an expert
// of the next layer is read speculatively.
const DefaultSpecThreshold = 0.3

// predictor guesses the next MoE layer's experts from the experts the
// current layer chose, from counts of which experts followed which in
// earlier steps (consecutive layers' choices are correlated: a token's
// hidden state changes little from one layer to the next). It learns
// online and starts empty, so it only speculates once it has seen enough.
type predictor struct {
	next map[int]int
	nexp map[int]int
	// co[l][i·E'+j] counts steps where layer l chose i and the next MoE
	// layer chose j; seen[l][i] counts steps where layer l chose i and the
	// next layer's choice was observed.
	co   map[int][]float32
	seen map[int][]float32
	// The previous demand of this step.
	prevLayer int
	prevSet   []int
	prevStep  int64
	threshold float64
	score     []float64
	order     []int
}

// minSeen is how many co-occurrences an expert needs before its row is
// trusted.
const minSeen = 4

// decayAt halves a layer's counts when its observations reach it, so the
// predictor follows a change of topic.
const decayAt = 1 << 14

func newPredictor(layers map[int]int, next map[int]int) *predictor {
	p := &predictor{next: next, nexp: layers, co: map[int][]float32{}, seen: map[int][]float32{}, prevStep: -1, threshold: DefaultSpecThreshold}
	for l, n := range layers {
		if nl := next[l]; nl >= 0 {
			p.co[l] = make([]float32, n*layers[nl])
			p.seen[l] = make([]float32, n)
		}
	}
	return p
}

// observe records layer's choice at step now.
func (p *predictor) observe(layer int, experts []int, now int64) {
	if p.prevStep == now && p.next[p.prevLayer] == layer {
		co, seen := p.co[p.prevLayer], p.seen[p.prevLayer]
		en := p.nexp[layer]
		var total float32
		for _, i := range p.prevSet {
			seen[i]++
			total += seen[i]
			row := co[i*en : (i+1)*en]
			for _, j := range experts {
				if j >= 0 && j < en {
					row[j]++
				}
			}
		}
		if total > decayAt {
			for k := range co {
				co[k] /= 2
			}
			for k := range seen {
				seen[k] /= 2
			}
		}
	}
	p.prevLayer, p.prevStep = layer, now
	p.prevSet = append(p.prevSet[:0], experts...)
}

// predict returns the next layer's experts whose estimated probability,
// the mean over layer's chosen experts of P(j | i), reaches the
// threshold, most likely first.
func (p *predictor) predict(layer int, experts []int) []int {
	nl := p.next[layer]
	co, seen := p.co[layer], p.seen[layer]
	if nl < 0 || co == nil || len(experts) == 0 {
		return nil
	}
	en := p.nexp[nl]
	if cap(p.score) < en {
		p.score = make([]float64, en)
	}
	score := p.score[:en]
	clear(score)
	n := 0
	for _, i := range experts {
		if i < 0 || i >= len(seen) || seen[i] < minSeen {
			continue
		}
		n++
		row := co[i*en : (i+1)*en]
		inv := 1 / float64(seen[i])
		for j, v := range row {
			score[j] += float64(v) * inv
		}
	}
	if n == 0 {
		return nil
	}
	p.order = p.order[:0]
	cut := p.threshold * float64(n)
	for j, s := range score {
		if s >= cut {
			p.order = append(p.order, j)
		}
	}
	slices.SortFunc(p.order, func(a, b int) int {
		switch {
		case score[a] > score[b]:
			return -1
		case score[a] < score[b]:
			return 1
		}
		return a - b
	})
	return p.order
}
