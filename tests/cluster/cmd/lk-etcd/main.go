// Command lk-etcd is etcd 3.6 (go.etcd.io/etcd/server/v3) with its usual flags. It is its own
// binary so that etcd's process-wide metric registrations never meet the apiserver's.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
