// Command lk-cri stops and removes every pod sandbox of a CRI runtime (containerd), the way the
// kubelet does when it deletes a pod: each running container gets StopContainer with a grace
// period (SIGTERM, SIGKILL when it is over), then each sandbox is stopped (its network torn down
// by the CNI plugins, its network namespace removed) and removed. down.sh runs it after the
// kubelet stopped, so no container, shim, mount or network namespace outlives the cluster.
//
//	lk-cri -endpoint unix:///path/containerd.sock [-grace 10s]
package main

import (
	"context"
	"flag"
	"log"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	endpoint := flag.String("endpoint", "", "the runtime's CRI socket, unix:///…")
	grace := flag.Duration("grace", 10*time.Second, "how long each container may take to stop after SIGTERM")
	flag.Parse()
	if !strings.HasPrefix(*endpoint, "unix://") {
		log.Fatal("lk-cri: -endpoint unix:///path is required")
	}
	conn, err := grpc.NewClient("unix://"+strings.TrimPrefix(*endpoint, "unix://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatalf("lk-cri: %v", err)
	}
	defer conn.Close()
	rt := runtime.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), *grace+time.Minute)
	defer cancel()

	containers, err := rt.ListContainers(ctx, &runtime.ListContainersRequest{})
	if err != nil {
		log.Fatalf("lk-cri: list containers: %v", err)
	}
	// In parallel, as the kubelet stops a pod's containers: the grace periods overlap.
	var wg sync.WaitGroup
	for _, c := range containers.Containers {
		if c.State != runtime.ContainerState_CONTAINER_RUNNING {
			continue
		}
		wg.Add(1)
		go func(c *runtime.Container) {
			defer wg.Done()
			_, err := rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: c.Id, Timeout: int64(grace.Seconds())})
			if err != nil {
				log.Printf("lk-cri: stop container %s (%s): %v", c.Metadata.GetName(), c.Id, err)
			}
		}(c)
	}
	wg.Wait()

	sandboxes, err := rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		log.Fatalf("lk-cri: list pod sandboxes: %v", err)
	}
	failed := false
	for _, s := range sandboxes.Items {
		name := s.Metadata.GetNamespace() + "/" + s.Metadata.GetName()
		if _, err := rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: s.Id}); err != nil {
			log.Printf("lk-cri: stop pod sandbox %s: %v", name, err)
			failed = true
			continue
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: s.Id}); err != nil {
			log.Printf("lk-cri: remove pod sandbox %s: %v", name, err)
			failed = true
		}
	}
	if len(sandboxes.Items) > 0 {
		log.Printf("lk-cri: removed %d pod sandbox(es)", len(sandboxes.Items))
	}
	if failed {
		log.Fatal("lk-cri: some pod sandboxes remain")
	}
}
