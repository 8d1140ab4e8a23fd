package daemon

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// filterProgram builds a classic BPF program whose jumps name their
// targets (labels) instead of counting instructions, so that a program
// with a variable number of address comparisons stays readable.
type filterProgram struct {
	prog   []bpf.Instruction
	labels map[string]int
	jumps  []labelJump
}

// labelJump is a jump whose offsets are filled in by assemble; "" is the
// next instruction.
type labelJump struct {
	at              int
	ifTrue, ifFalse string
	always          bool // bpf.Jump to ifTrue
}

func newFilterProgram() *filterProgram {
	return &filterProgram{labels: map[string]int{}}
}

func (p *filterProgram) add(ins ...bpf.Instruction) { p.prog = append(p.prog, ins...) }

// label names the next instruction.
func (p *filterProgram) label(name string) { p.labels[name] = len(p.prog) }

// jumpIf compares A with val: on true to ifTrue, else to ifFalse.
func (p *filterProgram) jumpIf(cond bpf.JumpTest, val uint32, ifTrue, ifFalse string) {
	p.jumps = append(p.jumps, labelJump{at: len(p.prog), ifTrue: ifTrue, ifFalse: ifFalse})
	p.add(bpf.JumpIf{Cond: cond, Val: val})
}

// jump always goes to target.
func (p *filterProgram) jump(target string) {
	p.jumps = append(p.jumps, labelJump{at: len(p.prog), ifTrue: target, always: true})
	p.add(bpf.Jump{})
}

// jumpIfFar is jumpIf for targets beyond a conditional jump's 255
// instructions: it branches to two plain jumps.
func (p *filterProgram) jumpIfFar(cond bpf.JumpTest, val uint32, ifTrue, ifFalse string) {
	after := fmt.Sprintf("far-%d", len(p.prog))
	if ifTrue == "" {
		ifTrue = after
	}
	if ifFalse == "" {
		ifFalse = after
	}
	p.jumpIf(cond, val, after+"-true", after+"-false")
	p.label(after + "-true")
	p.jump(ifTrue)
	p.label(after + "-false")
	p.jump(ifFalse)
	p.label(after)
}

// ip6Equal jumps to ifEqual when the 16 bytes at off are a, else to the
// next instruction after it. The last comparison leads to a plain jump, so
// the conditional jumps stay short however far ifEqual is.
func (p *filterProgram) ip6Equal(off uint32, a netip.Addr, ifEqual, uniq string) {
	b := a.As16()
	next := "ip6-ne-" + uniq
	for i := range 4 {
		p.add(bpf.LoadAbsolute{Off: off + uint32(4*i), Size: 4})
		p.jumpIf(bpf.JumpEqual, binary.BigEndian.Uint32(b[4*i:]), "", next)
	}
	p.jump(ifEqual)
	p.label(next)
}

// assemble resolves the labels (forward only, as classic BPF requires).
func (p *filterProgram) assemble() (*unix.SockFprog, error) {
	offset := func(at int, label string) (uint32, error) {
		if label == "" {
			return 0, nil
		}
		to, ok := p.labels[label]
		if !ok || to <= at {
			return 0, fmt.Errorf("socket filter: jump from %d to %q (%d)", at, label, to)
		}
		return uint32(to - at - 1), nil
	}
	for _, j := range p.jumps {
		t, err := offset(j.at, j.ifTrue)
		if err != nil {
			return nil, err
		}
		if j.always {
			p.prog[j.at] = bpf.Jump{Skip: t}
			continue
		}
		f, err := offset(j.at, j.ifFalse)
		if err != nil {
			return nil, err
		}
		if t > 255 || f > 255 {
			return nil, fmt.Errorf("socket filter: conditional jump at %d too long (%d, %d)", j.at, t, f)
		}
		ins := p.prog[j.at].(bpf.JumpIf)
		ins.SkipTrue, ins.SkipFalse = uint8(t), uint8(f)
		p.prog[j.at] = ins
	}
	return assemble(p.prog)
}

func assemble(prog []bpf.Instruction) (*unix.SockFprog, error) {
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("assemble socket filter: %w", err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return &unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}, nil
}

// splitVIPs separates IPv4 and IPv6 VIPs. IPv4 comparisons are single
// conditional jumps, so at most maxV4 of them are kept (8-bit offsets).
func splitVIPs(vips []netip.Addr, maxV4 int) (v4 []uint32, v6 []netip.Addr) {
	for _, a := range vips {
		a = a.Unmap()
		switch {
		case a.Is4():
			if len(v4) < maxV4 {
				v4 = append(v4, binary.BigEndian.Uint32(a.AsSlice()))
			}
		case a.Is6():
			v6 = append(v6, a)
		}
	}
	return v4, v6
}
