// SPDX-License-Identifier: GPL-2.0
/*
 * mt_idle - the idle cost of whatever runs in the guest (for `make bench`).
 *
 * Sleeps seconds=N (default 60) and reports, from /proc/interrupts and
 * /proc/stat, the local timer interrupts (wakeups) per second and the share
 * of CPU time not idle over that window:
 *
 *   # MIGTIME-IDLE seconds=N wakeups_per_s=X busy_pct=Y
 *
 * Its one check: both files parsed (a "LOC:" line with a count per CPU, a
 * "cpu" line) and every counter moved forward over the window, with time
 * passing on the guest's CPUs; otherwise the numbers above mean nothing.
 */
#define _GNU_SOURCE
#include "kselftest.h"
#include "mt_page.h"

/*
 * Sum of the per-CPU counts on the "LOC:" line of /proc/interrupts; *cpus
 * is how many counts it had (0: no such line).
 */
static unsigned long long local_timer_irqs(int *cpus)
{
	char line[4096];
	unsigned long long sum = 0;
	FILE *f = fopen("/proc/interrupts", "r");

	*cpus = 0;
	if (!f)
		ksft_exit_fail_msg("/proc/interrupts: %s\n", strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		char *p = line, *end;

		while (*p == ' ')
			p++;
		if (strncmp(p, "LOC:", 4))
			continue;
		p += 4;
		for (;;) {
			unsigned long long v = strtoull(p, &end, 10);

			if (end == p)
				break;
			sum += v;
			(*cpus)++;
			p = end;
		}
	}
	fclose(f);
	return sum;
}

/* Total and idle jiffies from the "cpu" line of /proc/stat. */
static void cpu_times(unsigned long long *total, unsigned long long *idle)
{
	unsigned long long v[10] = { 0 };
	FILE *f = fopen("/proc/stat", "r");

	if (!f || fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
			 &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]) < 4)
		ksft_exit_fail_msg("/proc/stat unreadable\n");
	fclose(f);
	*total = 0;
	for (int i = 0; i < 10; i++)
		*total += v[i];
	*idle = v[3] + v[4];
}

int main(int argc, char **argv)
{
	long seconds = 60;
	unsigned long long irq0, irq1, t0, t1, i0, i1;
	int64_t m0, m1;
	int cpus0, cpus1;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		if (!strncmp(argv[i], "seconds=", 8))
			seconds = atol(argv[i] + 8);
		else
			ksft_exit_fail_msg("unknown argument '%s'\n", argv[i]);
	}
	if (seconds < 1)
		ksft_exit_fail_msg("seconds must be >= 1\n");
	ksft_print_header();
	ksft_set_plan(1);
	irq0 = local_timer_irqs(&cpus0);
	cpu_times(&t0, &i0);
	m0 = mt_clock_ns(CLOCK_MONOTONIC);
	sleep(seconds);
	m1 = mt_clock_ns(CLOCK_MONOTONIC);
	irq1 = local_timer_irqs(&cpus1);
	cpu_times(&t1, &i1);
	printf("# MIGTIME-IDLE seconds=%.3f wakeups_per_s=%.2f busy_pct=%.3f\n",
	       (m1 - m0) / 1e9, (irq1 - irq0) / ((m1 - m0) / 1e9),
	       t1 > t0 ? 100.0 * ((t1 - t0) - (i1 - i0)) / (t1 - t0) : 0.0);
	ksft_test_result(cpus0 > 0 && cpus1 == cpus0 && irq1 > irq0 && t1 > t0 && i1 >= i0 &&
			 m1 > m0,
			 "idle counters parsed and moving (%d CPUs on LOC:, +%llu interrupts, +%llu jiffies)\n",
			 cpus1, irq1 - irq0, t1 - t0);
	ksft_finished();
}
