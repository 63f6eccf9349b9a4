// SPDX-License-Identifier: GPL-2.0
/*
 * mt_companion - the userspace companion (/bin/migtime-companion) across
 * real live migrations.
 *
 * DESTRUCTIVE: the companion resets NTP state and nudges CLOCK_REALTIME.
 *
 * Starts the companion with a stand-in chronyc (/tmp/chronyc appends its
 * arguments to /tmp/chronyc.log; /tmp/chronyd.sock stands for chronyd's
 * socket) and an --on-event hook appending "TRIGGER SEQ MARKER" to /tmp/acts.
 * For each hop it arms a TFD_TIMER_CANCEL_ON_SET timerfd, marks NTP
 * synchronised with a leap second armed (STA_INS), prints "# MIGTIME-READY
 * mt_companion" and waits until the companion has acted. Then:
 *
 *   expect=vmclock  (QEMU -device vmclock, module not loaded) the action came
 *                   from the VMClock disruption marker; the companion reset
 *                   NTP state (maxerror at the limit, so STA_UNSYNC within a
 *                   second) and woke the cancel-on-set timer (its 1 ns
 *                   ADJ_SETOFFSET nudge)
 *   expect=migtime  (module loaded, VMClock present too) the action came from
 *                   the migtime event with migration_seq = hop, and the
 *                   companion saw the VMClock marker of the same migration and
 *                   did not act on it again
 *
 * In both, STA_INS survived (neither the companion nor the module's step
 * clears it), chronyc was run once per hop with `reset sources', `makestep
 * 0.1 1', `burst 4/4', and after the last hop no further action comes within
 * settle=SECS (default 5: the 1.5 s de-duplication window plus margin).
 * Options: expect=vmclock|migtime, hops=K, wait=SECS (default 60).
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/timex.h>
#include <sys/wait.h>

#include "kselftest.h"
#include "mt_page.h"

#define NTP_PHASE_LIMIT_US 16000000L
#define COMPANION "/bin/migtime-companion"
#define LOG "/tmp/companion.log"

static int expect_migtime;
static int hops = 1;
static int wait_s = 60;
static int settle_s = 5;
static pid_t child;

static int count_lines(const char *path, const char *needle, char *last, size_t lastsz)
{
	char line[512];
	int n = 0;
	FILE *f = fopen(path, "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (needle && !strstr(line, needle))
			continue;
		n++;
		if (last) {
			line[strcspn(line, "\n")] = 0;
			snprintf(last, lastsz, "%s", line);
		}
	}
	fclose(f);
	return n;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	if (!f || fputs(text, f) < 0 || fclose(f))
		ksft_exit_fail_msg("write %s: %s\n", path, strerror(errno));
	chmod(path, mode);
}

static void dump_log(void)
{
	char line[512];
	FILE *f = fopen(LOG, "r");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		ksft_print_msg("companion: %s", line);
	fclose(f);
}

static void stop_companion(void)
{
	int st;

	if (child > 0) {
		kill(child, SIGTERM);
		waitpid(child, &st, 0);
		child = 0;
	}
}

static int wait_for(const char *path, const char *needle, int n, int secs)
{
	for (int i = 0; i < secs * 20; i++) {
		if (count_lines(path, needle, NULL, 0) >= n)
			return 1;
		usleep(50000);
	}
	return 0;
}

static void start_companion(void)
{
	int fd;

	write_file("/tmp/chronyc", "#!/bin/sh\necho \"$*\" >> /tmp/chronyc.log\necho 200 OK\n", 0755);
	write_file("/tmp/chronyd.sock", "", 0644);
	child = fork();
	if (child < 0)
		ksft_exit_fail_msg("fork: %s\n", strerror(errno));
	if (child == 0) {
		fd = open(LOG, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 2);
			dup2(fd, 1);
		}
		execl(COMPANION, COMPANION, "--chronyc", "/tmp/chronyc", "--chrony-socket",
		      "/tmp/chronyd.sock", "--vmclock-poll-ms", "100", "--on-event",
		      "echo \"$MIGTIME_TRIGGER $MIGTIME_SEQ $MIGTIME_MARKER\" >> /tmp/acts",
		      (char *)NULL);
		_exit(127);
	}
}

/* Writes the NTP status word (and nothing else). */
static int set_status(int status)
{
	struct timex tx = { 0 };

	tx.modes = ADJ_STATUS;
	tx.status = status;
	return adjtimex(&tx) < 0 ? -1 : 0;
}

static void hop(int n)
{
	struct timex tx = { 0 };
	char last[512] = "", want[64], chrony[512] = "";
	uint64_t ticks;
	int tfd, acted, cancelled;

	tfd = mt_arm_cancel_on_set();
	if (tfd < 0)
		ksft_exit_fail_msg("cancel-on-set timerfd: %s\n", strerror(errno));
	if (mt_set_ntp_synced() || set_status(STA_INS))
		ksft_exit_fail_msg("adjtimex(set synced, STA_INS): %s\n", strerror(errno));
	printf("# MIGTIME-READY mt_companion hop %d\n", n);
	fflush(stdout);

	acted = wait_for("/tmp/acts", NULL, n, wait_s);
	count_lines("/tmp/acts", NULL, last, sizeof(last));
	cancelled = read(tfd, &ticks, sizeof(ticks)) < 0 && errno == ECANCELED;
	close(tfd);
	/* The companion leaves the status word alone: the kernel sets STA_UNSYNC at its next
	 * second overflow once maxerror is at the limit. */
	for (int i = 0; i < 60; i++) {
		if (adjtimex(&tx) < 0)
			ksft_exit_fail_msg("adjtimex(read): %s\n", strerror(errno));
		if (tx.status & STA_UNSYNC)
			break;
		usleep(50000);
	}
	ksft_print_msg("hop %d: action \"%s\"; adjtimex status %#x maxerror %ld\n", n, last,
		       tx.status, tx.maxerror);

	ksft_test_result(acted, "hop%d companion acted within %d s\n", n, wait_s);
	if (expect_migtime) {
		snprintf(want, sizeof(want), "migtime %d ", n);
		ksft_test_result(!strncmp(last, want, strlen(want)),
				 "hop%d action came from the migtime event, migration_seq %d\n", n, n);
	} else {
		ksft_test_result(!strncmp(last, "vmclock  ", 9) && strlen(last) > 9,
				 "hop%d action came from the VMClock disruption marker\n", n);
	}
	ksft_test_result(cancelled, "hop%d cancel-on-set timerfd ECANCELED\n", n);
	ksft_test_result((tx.status & STA_UNSYNC) && tx.maxerror >= NTP_PHASE_LIMIT_US,
			 "hop%d NTP state reset (STA_UNSYNC, maxerror at the limit)\n", n);
	ksft_test_result(tx.status & STA_INS, "hop%d leap-second flag STA_INS kept\n", n);
	set_status(0);
	ksft_test_result(count_lines("/tmp/chronyc.log", NULL, chrony, sizeof(chrony)) == n &&
				 !strcmp(chrony, "-n -m -h /tmp/chronyd.sock reset sources makestep 0.1 1 burst 4/4"),
			 "hop%d chronyc ran once: reset sources, makestep 0.1 1, burst 4/4\n", n);
}

int main(int argc, char **argv)
{
	struct stat st;
	int per_hop = 6, dups;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "expect=migtime"))
			expect_migtime = 1;
		else if (!strcmp(a, "expect=vmclock"))
			expect_migtime = 0;
		else if (!strncmp(a, "hops=", 5))
			hops = atoi(a + 5);
		else if (!strncmp(a, "wait=", 5))
			wait_s = atoi(a + 5);
		else if (!strncmp(a, "settle=", 7))
			settle_s = atoi(a + 7);
		else
			ksft_exit_fail_msg("unknown argument '%s'\n", a);
	}
	if (hops < 1 || wait_s < 1 || settle_s < 1)
		ksft_exit_fail_msg("bad hops/wait/settle\n");
	ksft_print_header();
	if (stat(COMPANION, &st))
		ksft_exit_skip("%s not in the initramfs\n", COMPANION);
	ksft_set_plan(3 + hops * per_hop + 2);

	ksft_test_result(!stat("/dev/vmclock0", &st), "/dev/vmclock0 present (ptp_vmclock)\n");
	ksft_test_result((stat("/dev/migtime", &st) == 0) == expect_migtime, "/dev/migtime %s\n",
			 expect_migtime ? "present" : "absent (module not loaded)");
	start_companion();
	ksft_test_result(wait_for(LOG, "VMClock: opened", 1, 30) &&
				 (!expect_migtime || wait_for(LOG, "migtime: opened", 1, 30)),
			 "companion opened its devices\n");

	for (int n = 1; n <= hops; n++)
		hop(n);

	sleep(settle_s);
	ksft_test_result(count_lines("/tmp/acts", NULL, NULL, 0) == hops,
			 "one action per migration (%d), none after %d s\n", hops, settle_s);
	/* Each migration's other signal was seen and not acted on. */
	dups = count_lines(LOG, "also covers VMClock marker", NULL, 0) +
	       count_lines(LOG, "duplicate: this migration was already acted on", NULL, 0);
	if (expect_migtime)
		ksft_test_result(dups == hops, "VMClock marker of each migration paired with its event (%d/%d)\n",
				 dups, hops);
	else
		ksft_test_result(dups == 0 && count_lines(LOG, "NTP state reset", NULL, 0) == hops,
				 "VMClock actions reset NTP state once per migration\n");
	stop_companion();
	dump_log();
	ksft_finished();
}
