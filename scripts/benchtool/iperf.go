package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
)

// runIperf reads `iperf3 -J` client output on stdin and prints
// "gbit_per_s bytes": what the receiver got, which is what crossed the
// proxy.
func runIperf(args []string) error {
	fs := flag.NewFlagSet("iperf", flag.ExitOnError)
	fs.Parse(args)
	var out struct {
		End struct {
			SumReceived struct {
				Bytes         float64 `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&out); err != nil {
		return fmt.Errorf("iperf3 JSON: %w", err)
	}
	if out.Error != "" {
		return fmt.Errorf("iperf3: %s", out.Error)
	}
	if out.End.SumReceived.Bytes == 0 {
		return fmt.Errorf("iperf3 moved no data")
	}
	fmt.Printf("%.3f %.0f\n", out.End.SumReceived.BitsPerSecond/1e9, out.End.SumReceived.Bytes)
	return nil
}
