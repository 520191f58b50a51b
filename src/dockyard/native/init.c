/*
 * dockyard-init: the minimal init `--init` runs as PID 1 in a container
 * (bind-mounted at /sbin/docker-init, invoked as `docker-init -- CMD ARGS...`).
 *
 * - starts CMD as its only direct child, in its own process group (made the
 *   terminal's foreground group when stdin is a tty, so ^C reaches CMD once);
 * - forwards every catchable signal it receives to CMD (SIGCHLD excepted);
 * - reaps every zombie re-parented to it (PID 1, or a child subreaper when
 *   it is not PID 1);
 * - exits with CMD's status: its exit code, or 128+N when signal N killed it.
 *
 * How: all asynchronous signals are blocked and taken synchronously with
 * sigtimedwait(), so there are no handlers and no races; blocked signals are
 * never "ignored" by the kernel, even for a namespace's PID 1.
 *
 * Built static (gcc -static -Os) by scripts/setup.sh: nothing in the
 * container's root is needed. Dockyard's own code; small on purpose.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PR_SET_CHILD_SUBREAPER
#define PR_SET_CHILD_SUBREAPER 36
#endif

static const char *prog = "docker-init";

static void usage(void)
{
	fprintf(stderr, "usage: %s [-g] [--] COMMAND [ARG...]\n"
		"  -g  forward signals to the command's process group\n", prog);
}

/* Signals that report a fault of this very process: never block them. */
static int synchronous(int sig)
{
	return sig == SIGFPE || sig == SIGILL || sig == SIGSEGV || sig == SIGBUS ||
	       sig == SIGABRT || sig == SIGTRAP || sig == SIGSYS;
}

static pid_t spawn(char **argv, const sigset_t *old_mask)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid; /* parent, or -1 */

	/* A process group of its own; the terminal's foreground group if any.
	 * SIGTTOU is still blocked here, so tcsetpgrp() cannot stop us. */
	setpgid(0, 0);
	if (isatty(STDIN_FILENO) && tcsetpgrp(STDIN_FILENO, getpgrp()) < 0 &&
	    errno != ENOTTY && errno != ENXIO)
		fprintf(stderr, "%s: warning: tcsetpgrp: %s\n", prog, strerror(errno));

	/* The parent ignores these two; the command gets the defaults back. */
	signal(SIGTTIN, SIG_DFL);
	signal(SIGTTOU, SIG_DFL);
	sigprocmask(SIG_SETMASK, old_mask, NULL);
	execvp(argv[0], argv);
	int err = errno;
	fprintf(stderr, "%s: exec %s failed: %s\n", prog, argv[0], strerror(err));
	_exit(err == ENOENT ? 127 : 126);
}

/* Reap every waitable child; record the command's status. Returns 1 once the
 * command has exited. */
static int reap(pid_t child, int *status)
{
	int done = 0;
	for (;;) {
		int st;
		pid_t pid = waitpid(-1, &st, WNOHANG);
		if (pid <= 0) {
			if (pid < 0 && errno == EINTR)
				continue;
			break; /* 0: nothing more now; -1 ECHILD: no children left */
		}
		if (pid == child) {
			*status = st;
			done = 1;
		}
	}
	return done;
}

int main(int argc, char **argv)
{
	int group = 0;
	int i = 1;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		}
		if (strcmp(argv[i], "-g") == 0) {
			group = 1;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage();
			return 0;
		} else {
			fprintf(stderr, "%s: unknown option %s\n", prog, argv[i]);
			usage();
			return 1;
		}
	}
	if (i >= argc) {
		usage();
		return 1;
	}

	if (getpid() != 1 && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
		fprintf(stderr, "%s: warning: cannot become a subreaper: %s\n", prog,
			strerror(errno));

	sigset_t all, old;
	sigfillset(&all);
	for (int s = 1; s < NSIG; s++)
		if (synchronous(s))
			sigdelset(&all, s);
	if (sigprocmask(SIG_BLOCK, &all, &old) < 0) {
		fprintf(stderr, "%s: sigprocmask: %s\n", prog, strerror(errno));
		return 1;
	}
	/* A background init touching the tty must not be stopped. */
	signal(SIGTTIN, SIG_IGN);
	signal(SIGTTOU, SIG_IGN);

	pid_t child = spawn(argv + i, &old);
	if (child < 0) {
		fprintf(stderr, "%s: fork: %s\n", prog, strerror(errno));
		return 1;
	}

	int status = 0;
	for (;;) {
		/* The timeout catches a SIGCHLD that arrived before we waited. */
		struct timespec tick = {1, 0};
		siginfo_t info;
		int sig = sigtimedwait(&all, &info, &tick);
		if (sig < 0) {
			if (errno != EAGAIN && errno != EINTR) {
				fprintf(stderr, "%s: sigtimedwait: %s\n", prog, strerror(errno));
				return 1;
			}
		} else if (sig != SIGCHLD) {
			/* ESRCH: the command is gone already, its exit is being reaped. */
			if (kill(group ? -child : child, sig) < 0 && errno != ESRCH)
				fprintf(stderr, "%s: forwarding signal %d: %s\n", prog, sig,
					strerror(errno));
		}
		if (reap(child, &status))
			break;
	}

	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 1;
}
