// SPDX-License-Identifier: GPL-2.0
/*
 * mt_chrony - a real chronyd (Debian bookworm 4.3) in a migrated guest.
 *
 * DESTRUCTIVE: chronyd steers the guest clock.
 *
 * Brings up the user-mode network (eth0 10.0.2.15/24, no default route: only
 * the host's 10.0.2.2 is reachable), starts chronyd configured as cloud
 * images ship it (`server 10.0.2.2 port PORT iburst minpoll 4 maxpoll 4',
 * `makestep 1 3'; PORT from mt.ntp= on the command line: the harness's NTP
 * server serving the simulated host's clock) and, unless expect=none, the
 * companion (/bin/migtime-companion, real chronyc). It waits until chronyd
 * is synchronised and has made three clock updates (`makestep 1 3' used up,
 * as in any guest that has run for a while), prints "# MIGTIME-READY mt_chrony" and watches the page's
 * migration_seq (BAR2) for the migration. After it, every second for
 * sync=SECS it prints chronyd's view as
 *   # MIGTIME-CHRONY hop=N t=SECS_AFTER_MIGRATION leap=... offset=S last=S freq=PPM
 * (`chronyc -c tracking': system time offset, last offset, frequency,
 * reference time). It also runs /tests/mt_probe (UDP port 5123): the harness
 * compares the guest's clock with the simulated host's through it, an
 * NTP-style exchange whose error is bounded by half its round trip.
 *
 * Checks per hop (expect=vmclock|migtime): the companion acted exactly once
 * for the migration, from the expected signal, and chronyd is synchronised to
 * the new host within sync=SECS: a clock update after the migration (the
 * reference time moved on), leap status Normal and that update's offset
 * within 5 ms of the server (a correctness bound: before the fix the guest is
 * seconds off). expect=none (chrony alone, the baseline) only reports.
 *
 * race=1 (with expect=migtime: a module polling slowly, poll_ms=5000, plus
 * VMClock, so that the VMClock signal usually wins the race and the
 * companion acts alone before the kernel steps): the companion acted on the
 * migtime event exactly once, after at most one VMClock action of its own
 * (it reports which came first), chronyc accepted every action, and chronyd
 * made no step of its own after the migration: the module's step is the
 * only correction.
 * Options: expect=none|vmclock|migtime, race=0|1, hops=K, sync=SECS (default
 * 60), hold=SECS (keep sampling this long after chronyd is synchronised,
 * default 3; measurements use 100 so that the host sees the error stay
 * within 5 ms).
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "kselftest.h"
#include "mt_page.h"

enum expect { EXPECT_NONE, EXPECT_VMCLOCK, EXPECT_MIGTIME };

static enum expect expect = EXPECT_MIGTIME;
static int hops = 1;
static int sync_s = 60;
static int hold_s = 3;
static int race;
static pid_t chronyd_pid, companion_pid, probe_pid;

struct tracking {
	int ok;
	char leap[32];
	double reftime, offset, last, freq;
};

static int run_quiet(const char *cmd)
{
	int st = system(cmd);

	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* chronyc -c tracking: ID,name,stratum,reftime,sys offset,last offset,rms,freq,... ,leap */
static struct tracking tracking(void)
{
	struct tracking t = { 0 };
	char line[1024], *f[16];
	int n = 0;
	FILE *p = popen("/usr/bin/chronyc -n -c tracking 2>/dev/null", "r");

	if (!p)
		return t;
	if (fgets(line, sizeof(line), p)) {
		line[strcspn(line, "\n")] = 0;
		for (char *s = strtok(line, ","); s && n < 16; s = strtok(NULL, ","))
			f[n++] = s;
		if (n >= 14) {
			t.ok = 1;
			t.reftime = atof(f[3]);
			t.offset = atof(f[4]);
			t.last = atof(f[5]);
			t.freq = atof(f[7]);
			snprintf(t.leap, sizeof(t.leap), "%s", f[13]);
		}
	}
	pclose(p);
	return t;
}

/* Leap status Normal, the last update within 5 ms of the server and no correction of more
 * than 5 ms still being slewed (a correction still in progress would carry over a migration
 * and be taken for the migration's error). */
static int synced(const struct tracking *t)
{
	return t->ok && !strcmp(t->leap, "Normal") && t->last < 0.005 && t->last > -0.005 &&
	       t->offset < 0.005 && t->offset > -0.005;
}

static pid_t spawn(const char *log, char *const argv[])
{
	pid_t pid = fork();
	int fd;

	if (pid < 0)
		ksft_exit_fail_msg("fork: %s\n", strerror(errno));
	if (pid == 0) {
		fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static void stop(pid_t *pid)
{
	int st;

	if (*pid > 0) {
		kill(*pid, SIGTERM);
		waitpid(*pid, &st, 0);
		*pid = 0;
	}
}

static int count_in(const char *path, const char *needle)
{
	char line[512];
	int n = 0;
	FILE *f = fopen(path, "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		n += !!strstr(line, needle);
	fclose(f);
	return n;
}

static void dump(const char *path, const char *tag)
{
	char line[512];
	FILE *f = fopen(path, "r");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		ksft_print_msg("%s: %s", tag, line);
	fclose(f);
}

static int ntp_port(void)
{
	char buf[4096] = "", *p;
	FILE *f = fopen("/proc/cmdline", "r");

	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = 0;
		fclose(f);
	}
	p = strstr(buf, "mt.ntp=");
	return p ? atoi(p + 7) : 0;
}

static uint64_t page_seq(void)
{
	struct mt_host_view h;

	return mt_read_host(&h, 1000) ? (uint64_t)-1 : h.seq;
}

#define STEPPED "System clock was stepped"

/* race=1: the companion's actions of hop n; 1 if they were right. At most one VMClock action
 * of its own (when its wait ran out before the module stepped), then exactly one on the
 * migtime event, each accepted by chronyd. */
static int race_actions_ok(int n, uint64_t seq)
{
	char want[96];
	int acts = count_in("/tmp/companion.log", "info: action ");
	int alone = count_in("/tmp/companion.log", "migration_seq=none: VMClock disruption");

	snprintf(want, sizeof(want), "migration_seq=%llu: migtime event", (unsigned long long)seq);
	ksft_print_msg("hop %d: %s (%d companion actions)\n", n,
		       alone ? "VMClock won the race: the companion acted alone, then re-synced after the kernel's step"
			     : "the migtime event came within the companion's window", acts);
	return alone <= 1 && acts == alone + 1 &&
	       count_in("/tmp/companion.log", "info: action ") == count_in("/tmp/companion.log", want) + alone &&
	       count_in("/tmp/companion.log", "-> 200 OK | 200 OK | 200 OK") == acts;
}

static void check_hop(int n, uint64_t seq, double ok_at, double worst, int steps0)
{
	char want[64];
	int acts = count_in("/tmp/companion.log", "info: action ");

	if (expect == EXPECT_MIGTIME)
		snprintf(want, sizeof(want), "info: action %d: migration_seq=%llu:", n,
			 (unsigned long long)seq);
	else
		snprintf(want, sizeof(want), "info: action %d: migration_seq=none:", n);
	if (race) {
		ksft_test_result(race_actions_ok(n, seq),
				 "hop%d companion acted once on the migtime event (after at most one VMClock action), chronyd accepted each\n",
				 n);
		ksft_test_result(count_in("/tmp/chronyd.log", STEPPED) == steps0,
				 "hop%d chronyd made no step after the migration (the module's step is the only one)\n", n);
	} else {
		ksft_test_result(acts == n && count_in("/tmp/companion.log", want) == 1,
				 "hop%d companion acted once, on the %s signal\n", n,
				 expect == EXPECT_MIGTIME ? "migtime" : "VMClock");
		ksft_test_result(count_in("/tmp/companion.log", "-> 200 OK | 200 OK | 200 OK") == n,
				 "hop%d chronyd accepted reset sources, makestep 0.1 1, burst 4/4\n", n);
	}
	ksft_test_result(ok_at >= 0, "hop%d chronyd synchronised to the new host within %d s (after %.1f s)\n",
			 n, sync_s, ok_at);
	if (expect == EXPECT_MIGTIME)
		/* The module stepped by Tout (skew included): chronyd's samples of the new host
		 * must agree, with no second correction (5 ms: bound of a right step vs a
		 * missing or doubled one, which are 0.5 s and more here). */
		ksft_test_result(ok_at >= 0 && worst < 0.005,
				 "hop%d no correction after the module's step: every update within 5 ms (worst %.6f s)\n",
				 n, worst);
}

static void hop(int n)
{
	struct tracking t, t0;
	uint64_t seq0 = page_seq(), seq = seq0;
	int moved = 0, steps0;
	double worst = 0, a, ok_at = -1;
	int64_t m0;

	/* 3 s in sync: the host's probe sees the guest synchronised before the migration. */
	sleep(3);
	printf("# MIGTIME-READY mt_chrony hop %d\n", n);
	fflush(stdout);
	for (int i = 0; i < 1200; i++) { /* up to 120 s of guest time */
		seq = page_seq();
		if (seq != seq0 && seq != (uint64_t)-1) {
			moved = 1;
			break;
		}
		usleep(100000);
	}
	t0 = tracking();
	steps0 = count_in("/tmp/chronyd.log", STEPPED);
	m0 = mt_clock_ns(CLOCK_MONOTONIC);
	ksft_test_result(moved, "hop%d migration seen (page migration_seq moved)\n", n);
	/* Once a second, in seconds since the migration was seen (guest monotonic). */
	for (double s = 0; moved && s <= sync_s + hold_s;
	     s = (mt_clock_ns(CLOCK_MONOTONIC) - m0) / 1e9) {
		t = tracking();
		printf("# MIGTIME-CHRONY hop=%d t=%.1f leap=%s offset=%.6f last=%.6f freq=%.3f reftime=%.3f\n",
		       n, s, t.ok ? t.leap : "?", t.offset, t.last, t.freq, t.reftime);
		/* Synchronised to the new host: a clock update from samples taken after the
		 * migration (reference time moved on), within 5 ms of the server. */
		if (t.ok && t.reftime > t0.reftime) {
			a = t.last < 0 ? -t.last : t.last;
			worst = a > worst ? a : worst;
		}
		if (ok_at < 0 && s <= sync_s && t.reftime > t0.reftime && synced(&t))
			ok_at = s;
		if (expect != EXPECT_NONE && ok_at >= 0 && s >= ok_at + hold_s)
			break;
		sleep(1);
	}
	printf("# MIGTIME-CHRONY-RESULT hop=%d expect=%s synced_after_s=%.1f worst_update_offset_s=%.6f steps=%d\n",
	       n, expect == EXPECT_NONE ? "none" : expect == EXPECT_VMCLOCK ? "vmclock" : "migtime", ok_at,
	       worst, count_in("/tmp/chronyd.log", STEPPED));
	if (expect != EXPECT_NONE)
		check_hop(n, seq, ok_at, worst, steps0);
}

static void parse_args(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "expect=none"))
			expect = EXPECT_NONE;
		else if (!strcmp(a, "expect=vmclock"))
			expect = EXPECT_VMCLOCK;
		else if (!strcmp(a, "expect=migtime"))
			expect = EXPECT_MIGTIME;
		else if (!strncmp(a, "race=", 5))
			race = atoi(a + 5);
		else if (!strncmp(a, "hops=", 5))
			hops = atoi(a + 5);
		else if (!strncmp(a, "sync=", 5))
			sync_s = atoi(a + 5);
		else if (!strncmp(a, "hold=", 5))
			hold_s = atoi(a + 5);
		else
			ksft_exit_fail_msg("unknown argument '%s'\n", a);
	}
	if (race && expect != EXPECT_MIGTIME)
		ksft_exit_fail_msg("race=1 needs expect=migtime\n");
}

int main(int argc, char **argv)
{
	char conf[512], *chronyd_argv[] = { "/usr/sbin/chronyd", "-d", "-u", "root", "-f",
					     "/etc/chrony/chrony.conf", NULL };
	char *probe_argv[] = { "/tests/mt_probe", NULL };
	char *companion_argv[] = { "/bin/migtime-companion", "--chrony", "always", "--chronyc",
				    "/usr/bin/chronyc", NULL };
	struct tracking t = { 0 };
	int port = ntp_port(), up = 0, updates = 0;
	double last_ref = 0;
	FILE *f;

	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_args(argc, argv);
	ksft_print_header();
	if (access("/usr/sbin/chronyd", X_OK) || !port)
		ksft_exit_skip("no chronyd in the initramfs or no mt.ntp= port\n");
	ksft_set_plan(2 + hops * (expect == EXPECT_NONE ? 1 : expect == EXPECT_VMCLOCK ? 4 : 5));
	if (mt_map_page(0))
		ksft_exit_fail_msg("cannot map the migtime page\n");

	ksft_test_result(!run_quiet("ifconfig lo 127.0.0.1 up && ifconfig eth0 10.0.2.15 netmask 255.255.255.0 up"),
			 "network up (eth0 10.0.2.15/24, no default route)\n");
	probe_pid = spawn("/tmp/probe.log", probe_argv);
	snprintf(conf, sizeof(conf),
		 "server 10.0.2.2 port %d iburst minpoll 4 maxpoll 4\nmakestep 1 3\n"
		 "driftfile /var/lib/chrony/chrony.drift\ncmdport 0\n", port);
	f = fopen("/etc/chrony/chrony.conf", "w");
	if (!f || fputs(conf, f) < 0 || fclose(f))
		ksft_exit_fail_msg("write chrony.conf\n");
	/* chronyd refuses a command socket directory others can enter. */
	chmod("/run/chrony", 0700);
	chronyd_pid = spawn("/tmp/chronyd.log", chronyd_argv);
	if (expect != EXPECT_NONE)
		companion_pid = spawn("/tmp/companion.log", companion_argv);
	/* As in a guest that has run for a while: synchronised, and `makestep 1 3' used up
	 * (three clock updates), so that after the migration chronyd may no longer step. */
	for (int i = 0; i < 240 && !up; i++) {
		sleep(1);
		t = tracking();
		if (t.ok && t.reftime != last_ref) {
			last_ref = t.reftime;
			updates++;
		}
		up = synced(&t) && updates >= 3;
	}
	ksft_test_result(up, "chronyd synchronised to the source host, %d clock updates (makestep 1 3 used up), before the migration (last offset %.6f s)\n",
			 updates, t.last);

	for (int n = 1; n <= hops; n++)
		hop(n);

	stop(&companion_pid);
	stop(&chronyd_pid);
	stop(&probe_pid);
	dump("/tmp/probe.log", "mt_probe");
	dump("/tmp/chronyd.log", "chronyd");
	dump("/tmp/companion.log", "companion");
	ksft_finished();
}
