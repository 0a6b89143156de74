/*
 * A minimal pod sandbox ("pause") process for the local test cluster: it holds the
 * pod's namespaces, reaps orphaned children when it is PID 1, and exits cleanly on
 * SIGINT or SIGTERM. Built with `gcc -static` by kind-tests/cluster.sh and packed
 * into an image with kind-tests/tools/mkimage.py.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
	(void)sig;
	_exit(0);
}

static void on_child(int sig) {
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0) {
	}
}

static void handle(int sig, void (*fn)(int)) {
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fn;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, NULL) != 0) {
		perror("sigaction");
		_exit(1);
	}
}

int main(int argc, char **argv) {
	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		puts("lapidary-pause 1");
		return 0;
	}
	handle(SIGINT, on_stop);
	handle(SIGTERM, on_stop);
	handle(SIGCHLD, on_child);
	for (;;) {
		pause();
	}
}
