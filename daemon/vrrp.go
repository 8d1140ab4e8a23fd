package daemon

import (
	"github.com/vipgate/vipgate/config"
	"github.com/vipgate/vipgate/vrrp"
)

// vrrpConfigs maps [[vrrp]] and [vrrp_script.*] to the vrrp package's types.
func vrrpConfigs(cfg *config.Config) []vrrp.Config {
	out := make([]vrrp.Config, 0, len(cfg.VRRP))
	for _, v := range cfg.VRRP {
		c := vrrp.Config{
			Name:              v.Name,
			Interface:         v.Interface,
			VRID:              uint8(v.VirtualRouterID),
			Priority:          uint8(*v.Priority),
			StartAsMaster:     v.State == "MASTER",
			Version:           v.Version,
			AdvertInterval:    v.AdvertInt.Duration,
			Preempt:           *v.Preempt,
			PreemptDelay:      v.PreemptDelay.Duration,
			AuthPass:          v.AuthPass,
			SourceIP:          v.SourceIP,
			UnicastPeers:      v.UnicastPeers,
			Family:            v.Family,
			GARPMasterDelay:   v.GARPMasterDelay.Duration,
			GARPMasterRepeat:  *v.GARPMasterRepeat,
			GARPMasterRefresh: v.GARPMasterRefresh.Duration,
			VIPLifetime:       v.VIPLifetimeDuration.Duration,
			TrackInterfaces:   v.TrackInterface,
			NotifyMaster:      v.NotifyMaster,
			NotifyBackup:      v.NotifyBackup,
			NotifyFault:       v.NotifyFault,
			Notify:            v.Notify,
			ScriptUser:        cfg.Global.ScriptUser,
			V3ChecksumAsV2:    v.V3ChecksumAsV2,
		}
		if v.VIPLifetimeAuto {
			c.VIPLifetime = vrrp.AutoVIPLifetime(c.AdvertInterval, c.Priority)
		}
		for _, vip := range v.VIPs {
			c.VIPs = append(c.VIPs, vrrp.VIP{Prefix: vip.Prefix, Device: vip.Device})
		}
		for _, name := range v.TrackScript {
			s := cfg.VRRPScript[name]
			c.Scripts = append(c.Scripts, vrrp.ScriptConfig{
				Name: name, Path: s.Script, Interval: s.Interval.Duration, Timeout: s.Timeout.Duration,
				Weight: s.Weight, Fall: s.Fall, Rise: s.Rise,
			})
		}
		out = append(out, c)
	}
	return out
}
