# Make targets of the local Kubernetes control plane (tests/cluster/README.md).
# Included from the root Makefile (`include tests/cluster/cluster.mk`); also usable alone:
# `make -f tests/cluster/cluster.mk cluster-up` from the repository root.
#
#   kube-tools     kubectl and helm (1.36 line) into target/tools/bin
#   cluster-build  build etcd, the control plane, the node agent and the test program (cached)
#   cluster-up     start everything on 127.0.0.1 and wait until pods can run; a no-op when up
#   cluster-down   stop everything, leaving no process behind (data stays; cluster-purge wipes it)
#   cluster-test   cluster-up, then the Go tests of tests/cluster against it

LOCALKUBE_MK_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
LOCALKUBE_REPO := $(abspath $(LOCALKUBE_MK_DIR)/../..)

.PHONY: kube-tools cluster-build cluster-up cluster-down cluster-purge cluster-test

kube-tools:
	$(LOCALKUBE_REPO)/scripts/install-kube-tools.sh

cluster-build:
	$(LOCALKUBE_MK_DIR)/build.sh

cluster-up: kube-tools
	$(LOCALKUBE_MK_DIR)/up.sh

cluster-down:
	$(LOCALKUBE_MK_DIR)/down.sh

cluster-purge:
	$(LOCALKUBE_MK_DIR)/down.sh --purge

cluster-test: cluster-up
	cd $(LOCALKUBE_MK_DIR) && go test -count=1 -timeout 15m ./...
