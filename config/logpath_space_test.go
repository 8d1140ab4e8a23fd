package config

import "testing"

// A log file whose own name has a space and no dot ("/var/log/vipgate/
// access log") is a file name, not nginx's access_log PATH FORMAT: only
// nginx's key=value parameters and the usual format names are refused.
func TestAccessLogFileNameWithSpaceAccepted(t *testing.T) {
	file := "[global]\naccess_log = \"/var/log/vipgate/access log\"\n" + httpApp
	if _, err := Parse([]byte(file), "vipgate.toml"); err != nil {
		t.Errorf("a valid file name with a space is refused:\n%v", err)
	}
}
