package vrrp

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// VIP is one virtual address and the device it goes on.
type VIP struct {
	Prefix netip.Prefix
	Device string // "" = the instance's interface (keepalived's "dev IF" form otherwise)
}

// ScriptConfig is a vrrp_script tracked by an instance.
type ScriptConfig struct {
	Name, Path        string
	Interval, Timeout time.Duration
	// Weight > 0 is added while the script succeeds, < 0 while it fails;
	// 0 puts the instance in FAULT while it fails (as keepalived).
	Weight, Fall, Rise int
}

// Config is one VRRP instance ([[vrrp]] in the configuration file).
type Config struct {
	Name, Interface string
	VRID            uint8
	Priority        uint8
	StartAsMaster   bool // state = "MASTER": take over after one advert interval unless a better master is heard
	Version         int  // 2 or 3
	AdvertInterval  time.Duration
	Preempt         bool
	PreemptDelay    time.Duration // no preemption until this long after entering BACKUP (start-up, leaving FAULT, stepping down)
	AuthPass        string        // version 2 only
	SourceIP        netip.Addr    // zero = interface primary address (IPv6: its link-local address)
	UnicastPeers    []netip.Addr  // non-empty: unicast adverts to and from these only
	Family          int           // 4 or 6
	VIPs            []VIP

	GARPMasterDelay   time.Duration // second burst; 0 = none
	GARPMasterRepeat  int           // packets per burst; 0 = 5 (keepalived's default)
	GARPMasterRefresh time.Duration // periodic announcements while MASTER; 0 = off

	VIPLifetime time.Duration // 0 = forever; see AutoVIPLifetime

	TrackInterfaces []string // besides Interface, which is always tracked
	Scripts         []ScriptConfig

	// Notify scripts: a path optionally followed by arguments. Notify is
	// called as: Notify INSTANCE NAME STATE PRIORITY (keepalived's way).
	NotifyMaster, NotifyBackup, NotifyFault, Notify string
	ScriptUser                                      string // user scripts run as; "" = our own user

	V3ChecksumAsV2 bool // VRRPv3/IPv4 checksum without the pseudo-header (keepalived's vrrp_v3_checksum_as_v2)
}

// Key is an instance's identity across reloads: an instance whose key is
// unchanged keeps its state and VIPs, whatever its name.
type Key struct {
	Interface string
	VRID      uint8
	Family    int
}

// Key returns c's identity.
func (c Config) Key() Key { return Key{Interface: c.Interface, VRID: c.VRID, Family: c.Family} }

func (c Config) sockKey() sockKey { return sockKey{Interface: c.Interface, Family: c.Family} }

// AutoVIPLifetime is vip_lifetime = "auto": the whole number of seconds
// just above Master_Down_Interval, so a killed master's VIPs expire about
// when a backup takes them.
func AutoVIPLifetime(advert time.Duration, priority uint8) time.Duration {
	mdi := 3*advert + time.Duration(256-int(priority))*advert/256
	return mdi.Truncate(time.Second) + time.Second
}

func (c *Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Interface == "" {
		bad("interface is empty")
	}
	if c.VRID == 0 {
		bad("virtual_router_id 0: must be 1..255")
	}
	if c.Priority == 0 || c.Priority == 255 {
		bad("priority %d: must be 1..254", c.Priority)
	}
	switch c.Version {
	case 2:
		if c.Family != 4 {
			bad("version 2 is IPv4 only")
		}
		if c.AdvertInterval < time.Second || c.AdvertInterval > 255*time.Second || c.AdvertInterval%time.Second != 0 {
			bad("advert_int %v: version 2 needs 1..255 whole seconds", c.AdvertInterval)
		}
	case 3:
		if c.AdvertInterval < 10*time.Millisecond || c.AdvertInterval > maxV3Interval || c.AdvertInterval%(10*time.Millisecond) != 0 {
			bad("advert_int %v: version 3 needs 10ms..40.95s in centiseconds", c.AdvertInterval)
		}
		if c.AuthPass != "" {
			bad("auth_pass is not allowed with version 3")
		}
	default:
		bad("version %d: must be 2 or 3", c.Version)
	}
	if c.Family != 4 && c.Family != 6 {
		bad("family %d: must be 4 or 6", c.Family)
	}
	if len(c.VIPs) == 0 {
		bad("no virtual_ipaddress")
	}
	for _, v := range c.VIPs {
		if !v.Prefix.IsValid() || (v.Prefix.Addr().Is4() != (c.Family == 4)) {
			bad("virtual_ipaddress %v is not IPv%d", v.Prefix, c.Family)
		}
	}
	for _, p := range c.UnicastPeers {
		if p.Is4() != (c.Family == 4) {
			bad("unicast_peer %v is not IPv%d", p, c.Family)
		}
	}
	if c.SourceIP.IsValid() && c.SourceIP.Is4() != (c.Family == 4) {
		bad("mcast_src_ip %v is not IPv%d", c.SourceIP, c.Family)
	}
	for _, s := range c.Scripts {
		if s.Path == "" || s.Interval <= 0 {
			bad("vrrp_script %s: needs a script and an interval", s.Name)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("vrrp %s: %w", c.Name, err)
	}
	return nil
}

func (c *Config) garpRepeat() int {
	if c.GARPMasterRepeat <= 0 {
		return 5
	}
	return c.GARPMasterRepeat
}

func (c *Config) fsmConfig(primary netip.Addr) fsmConfig {
	renew := time.Duration(0)
	if c.VIPLifetime > 0 {
		// Three chances to renew before the kernel lets the address go.
		renew = max(c.VIPLifetime/3, 10*time.Millisecond)
	}
	return fsmConfig{
		Version: c.Version, Priority: c.Priority, Interval: c.AdvertInterval,
		Preempt: c.Preempt, PreemptDelay: c.PreemptDelay, StartAsMaster: c.StartAsMaster,
		Primary: primary, GARPDelay: c.GARPMasterDelay, GARPRefresh: c.GARPMasterRefresh,
		VIPRenew: renew,
	}
}

func (c *Config) vipAddrs() []netip.Addr {
	a := make([]netip.Addr, len(c.VIPs))
	for i, v := range c.VIPs {
		a[i] = v.Prefix.Addr()
	}
	return a
}

func (c *Config) device(v VIP) string {
	if v.Device != "" {
		return v.Device
	}
	return c.Interface
}
