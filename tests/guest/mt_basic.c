// SPDX-License-Identifier: GPL-2.0
/*
 * mt_basic - non-destructive checks of a bound migtime device, before any
 * migration: the event device's permissions and refusals, poll without an
 * event, the debugfs counters, the bind line in the kernel log.
 *
 * /dev/migtime is 0440 root:root (the package's udev rule adds a group): a
 * user outside it cannot open it (and so cannot hold the module or learn
 * migration times). It is a stream: lseek is ESPIPE.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <grp.h>

#include "kselftest.h"
#include "mt_page.h"

static const char *const counters[] = {
	"events", "steps", "notifies", "refusals", "read_retries", "read_busy",
	"last_residual_ns", "last_seq",
};

static char klog[1 << 20];

/* In a child running as nobody (uid and gid 65534, no groups): errno of open, 0 if it opened. */
static int open_as_nobody(const char *path)
{
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		int fd;

		if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
			_exit(255);
		fd = open(path, O_RDONLY | O_NONBLOCK);
		_exit(fd >= 0 ? 0 : errno);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

int main(void)
{
	struct migtime_event ev;
	struct pollfd pfd;
	struct stat st;
	char buf[16];
	int fd, n;

	setvbuf(stdout, NULL, _IOLBF, 0);
	ksft_print_header();
	ksft_set_plan(11 + 2 * (int)(sizeof(counters) / sizeof(counters[0])));

	n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, klog, sizeof(klog) - 1);
	klog[n < 0 ? 0 : n] = 0;
	ksft_test_result(strstr(klog, "bound: mode=") != NULL, "kernel log has the bind line\n");

	ksft_test_result(!stat("/dev/migtime", &st) && S_ISCHR(st.st_mode) &&
			 (st.st_mode & 0777) == 0440 && st.st_uid == 0 && st.st_gid == 0,
			 "/dev/migtime is a char device, mode 0440 root:root (mode %o, %u:%u)\n",
			 st.st_mode & 0777, st.st_uid, st.st_gid);
	n = open_as_nobody("/dev/migtime");
	ksft_test_result(n == EACCES, "a user outside the group cannot open it (%s)\n",
			 n > 0 ? strerror(n) : n ? "child failed" : "opened!");

	fd = open("/dev/migtime", O_RDONLY | O_NONBLOCK);
	if (fd < 0)
		ksft_exit_fail_msg("open /dev/migtime: %s\n", strerror(errno));
	errno = 0;
	ksft_test_result(read(fd, &ev, sizeof(ev)) < 0 && errno == EAGAIN,
			 "non-blocking read without an event: EAGAIN (%s)\n", strerror(errno));
	errno = 0;
	ksft_test_result(read(fd, buf, 8) < 0 && errno == EINVAL,
			 "read with an 8-byte buffer: EINVAL (%s)\n", strerror(errno));
	errno = 0;
	ksft_test_result(lseek(fd, 0, SEEK_SET) < 0 && errno == ESPIPE,
			 "lseek is ESPIPE: a stream (%s)\n", strerror(errno));
	pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
	ksft_test_result(poll(&pfd, 1, 200) == 0, "poll without an event times out\n");
	errno = 0;
	ksft_test_result(ioctl(fd, 0x4d00, 0) < 0 && (errno == ENOTTY || errno == EINVAL),
			 "ioctl refused (%s)\n", strerror(errno));
	close(fd);

	/* Root bypasses the mode bits; the device itself must refuse writes. */
	fd = open("/dev/migtime", O_WRONLY);
	errno = 0;
	ksft_test_result(fd < 0 || (write(fd, "x", 1) < 0 && errno == EINVAL),
			 "write refused (%s)\n", strerror(errno));
	if (fd >= 0)
		close(fd);

	ksft_test_result(!stat("/sys/kernel/debug/migtime", &st) && S_ISDIR(st.st_mode),
			 "debugfs migtime/ exists\n");
	for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
		char p[128], v[64] = "", *end;
		FILE *f;
		int ok;

		snprintf(p, sizeof(p), "/sys/kernel/debug/migtime/%s", counters[i]);
		f = fopen(p, "r");
		ok = f && fgets(v, sizeof(v), f);
		if (f)
			fclose(f);
		v[strcspn(v, "\n")] = 0;
		strtoll(v, &end, 10);
		ksft_test_result(ok && end != v && !*end,
				 "debugfs %s is a number (%s)\n", counters[i], ok ? v : "unreadable");
		ksft_test_result(!stat(p, &st) && !(st.st_mode & 0222),
				 "debugfs %s is read-only (mode %o)\n", counters[i], st.st_mode & 0777);
	}
	/* The page's guest area is the module's: it must not have acked anything yet. */
	ksft_test_result(!mt_map_page(0) && MT_GUEST(events) == 0,
			 "no event acknowledged before any migration\n");
	ksft_finished();
}
