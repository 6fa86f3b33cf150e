/* The sandbox ("pause") container of every pod on the kubelet node: it holds the pod's namespaces
 * and does nothing else. Static, so its image is this one file FROM scratch (tests/cluster/node.sh). */
#include <signal.h>
#include <unistd.h>

static void stop(int sig) {
  (void)sig;
  _exit(0);
}

int main(void) {
  signal(SIGINT, stop);
  signal(SIGTERM, stop);
  for (;;) pause();
}
