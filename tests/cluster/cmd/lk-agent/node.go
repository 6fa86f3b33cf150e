package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

const kubeletVersion = "v1.36.3"

// nodeCapacity reports this machine's CPUs and memory, and the usual 110 pods.
func nodeCapacity() v1.ResourceList {
	mem := int64(0)
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			mem = kb * 1024
		}
	}
	return v1.ResourceList{
		v1.ResourceCPU:              *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI),
		v1.ResourceMemory:           *resource.NewQuantity(mem, resource.BinarySI),
		v1.ResourcePods:             *resource.NewQuantity(110, resource.DecimalSI),
		v1.ResourceEphemeralStorage: resource.MustParse("50Gi"),
	}
}

func (a *agent) nodeStatus(now metav1.Time, old *v1.NodeStatus) v1.NodeStatus {
	capacity := nodeCapacity()
	cond := func(t v1.NodeConditionType, s v1.ConditionStatus, reason, msg string) v1.NodeCondition {
		c := v1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
		if old != nil {
			for _, o := range old.Conditions {
				if o.Type == t && o.Status == s {
					c.LastTransitionTime = o.LastTransitionTime
				}
			}
		}
		return c
	}
	hostname, _ := os.Hostname()
	return v1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Conditions: []v1.NodeCondition{
			cond(v1.NodeMemoryPressure, v1.ConditionFalse, "KubeletHasSufficientMemory", "lk-agent has sufficient memory available"),
			cond(v1.NodeDiskPressure, v1.ConditionFalse, "KubeletHasNoDiskPressure", "lk-agent has no disk pressure"),
			cond(v1.NodePIDPressure, v1.ConditionFalse, "KubeletHasSufficientPID", "lk-agent has sufficient PID available"),
			cond(v1.NodeReady, v1.ConditionTrue, "KubeletReady", "lk-agent is posting ready status"),
		},
		Addresses: []v1.NodeAddress{
			{Type: v1.NodeInternalIP, Address: "127.0.0.1"},
			{Type: v1.NodeHostName, Address: a.cfg.nodeName},
		},
		DaemonEndpoints: v1.NodeDaemonEndpoints{KubeletEndpoint: v1.DaemonEndpoint{Port: int32(a.cfg.kubeletPort)}},
		NodeInfo: v1.NodeSystemInfo{
			MachineID:               hostname,
			KernelVersion:           kernelVersion(),
			OSImage:                 "localkube",
			ContainerRuntimeVersion: "localkube://1.0.0",
			KubeletVersion:          kubeletVersion,
			OperatingSystem:         runtime.GOOS,
			Architecture:            runtime.GOARCH,
		},
	}
}

func kernelVersion() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return string(trimNL(b))
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// registerNode creates the Node (or takes over an existing one of the same name).
func (a *agent) registerNode(ctx context.Context) error {
	return wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		node := &v1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name: a.cfg.nodeName,
				Labels: map[string]string{
					v1.LabelHostname:   a.cfg.nodeName,
					v1.LabelOSStable:   runtime.GOOS,
					v1.LabelArchStable: runtime.GOARCH,
				},
			},
		}
		_, err := a.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			klog.ErrorS(err, "registering node, will retry")
			return false, nil
		}
		if err := a.updateNodeStatus(ctx); err != nil {
			klog.ErrorS(err, "posting node status, will retry")
			return false, nil
		}
		klog.InfoS("node registered", "node", a.cfg.nodeName)
		return true, nil
	})
}

func (a *agent) updateNodeStatus(ctx context.Context) error {
	node, err := a.client.CoreV1().Nodes().Get(ctx, a.cfg.nodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	node.Status = a.nodeStatus(metav1.Now(), &node.Status)
	_, err = a.client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	return err
}

// renewLease keeps kube-node-lease/<node> fresh, as the kubelet does.
func (a *agent) renewLease(ctx context.Context) error {
	leases := a.client.CoordinationV1().Leases(v1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	lease, err := leases.Get(ctx, a.cfg.nodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		node, err := a.client.CoreV1().Nodes().Get(ctx, a.cfg.nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		lease = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{
				Name:      a.cfg.nodeName,
				Namespace: v1.NamespaceNodeLease,
				OwnerReferences: []metav1.OwnerReference{{
					APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID,
				}},
			},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptr.To(a.cfg.nodeName),
				LeaseDurationSeconds: ptr.To(a.cfg.leaseDurationSecs),
				RenewTime:            &now,
			},
		}
		_, err = leases.Create(ctx, lease, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	lease.Spec.HolderIdentity = ptr.To(a.cfg.nodeName)
	lease.Spec.LeaseDurationSeconds = ptr.To(a.cfg.leaseDurationSecs)
	lease.Spec.RenewTime = &now
	_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	return err
}

func (a *agent) heartbeat(ctx context.Context) {
	t := time.NewTicker(a.cfg.statusPeriod)
	defer t.Stop()
	for {
		if err := a.renewLease(ctx); err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "renewing node lease")
		}
		if err := a.updateNodeStatus(ctx); err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "posting node status")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
