// SPDX-License-Identifier: GPL-2.0
/*
 * mt_params - module parameters are validated at load.
 *
 * Unloads the module /init loaded, then loads it with each out-of-range
 * parameter: finit_module must fail with EINVAL and the kernel log must name
 * the parameter ("migtime: invalid NAME=VALUE: must be ..."), and the module
 * must not stay loaded. Finally loads it with the defaults again (so /init's
 * rmmod check still applies) and checks the device is back.
 */
#define _GNU_SOURCE
#include <sys/klog.h>
#include <sys/stat.h>

#include "kselftest.h"
#include "mt_page.h"

static const char *const bad[] = {
	"poll_ms=0",      "poll_ms=60001",      "max_step_ms=0",
	"on_violation=3", "read_attempts=0",    "read_attempts=100001",
};

static char klog[1 << 20];

static int klog_has(const char *needle)
{
	int n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, klog, sizeof(klog) - 1);

	if (n < 0)
		return 0;
	klog[n] = 0;
	return strstr(klog, needle) != NULL;
}

static int loaded(void)
{
	char line[256];
	int found = 0;
	FILE *f = fopen("/proc/modules", "r");

	while (f && fgets(line, sizeof(line), f))
		found |= !strncmp(line, "migtime ", 8);
	if (f)
		fclose(f);
	return found;
}

int main(void)
{
	const int n = sizeof(bad) / sizeof(bad[0]);
	struct stat st;
	int r;

	setvbuf(stdout, NULL, _IOLBF, 0);
	ksft_print_header();
	ksft_set_plan(3 * n + 2);

	r = mt_rmmod();
	ksft_test_result(r == 0 && !loaded(), "rmmod the loaded module (%s)\n",
			 r ? strerror(-r) : "ok");
	for (int i = 0; i < n; i++) {
		char needle[64];

		r = mt_insmod(bad[i]);
		snprintf(needle, sizeof(needle), "migtime: invalid %s:", bad[i]);
		ksft_test_result(r == -EINVAL, "insmod %s fails with EINVAL (%s)\n", bad[i],
				 r ? strerror(-r) : "loaded!");
		ksft_test_result(klog_has(needle), "kernel log names it: \"%s\"\n", needle);
		if (!r)
			mt_rmmod();
		ksft_test_result(!loaded(), "not loaded after insmod %s\n", bad[i]);
	}
	r = mt_insmod("");
	for (int i = 0; i < 200 && stat("/dev/migtime", &st); i++)
		usleep(10000);
	ksft_test_result(r == 0 && loaded() && !stat("/dev/migtime", &st),
			 "insmod with defaults works again, /dev/migtime back (%s)\n",
			 r ? strerror(-r) : "ok");
	ksft_finished();
}
