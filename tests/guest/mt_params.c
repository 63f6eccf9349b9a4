// SPDX-License-Identifier: GPL-2.0
/*
 * mt_params - module parameters are validated at load.
 *
 * Unloads the module /init loaded, then loads it with each out-of-range
 * parameter: finit_module must fail with EINVAL and the kernel log must name
 * the parameter ("migtime: invalid NAME=VALUE: must be ..."), and the module
 * must not stay loaded.
 *
 * ivshmem is bound only on the operator's word: loaded with no parameter at
 * all (mt_insmod would add ivshmem=1) the module loads, leaves the ivshmem page
 * alone and says why. The PCI enable count of
 * the ivshmem device is 0 whenever the module does not hold it (after rmmod,
 * and when it declined the device).
 *
 * Finally loads it with the defaults again (so /init's rmmod check still
 * applies) and checks the device is back.
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

/* insmod with exactly these parameters (no ivshmem=1 added): 0 or -errno. */
static int insmod_exactly(const char *params)
{
	int fd = open(MT_KO, O_RDONLY | O_CLOEXEC), r;

	if (fd < 0)
		return -errno;
	r = syscall(SYS_finit_module, fd, params, 0) ? -errno : 0;
	close(fd);
	return r;
}

/* The PCI enable count of the first ivshmem device (sysfs "enable"), or -1. */
static long ivshmem_enable_count(void)
{
	long count = -1;
	glob_t g;

	if (glob("/sys/bus/pci/devices/*", 0, NULL, &g))
		return -1;
	for (size_t i = 0; i < g.gl_pathc && count < 0; i++) {
		unsigned long v, d, e;

		if (!mt_read_hex(g.gl_pathv[i], "vendor", &v) &&
		    !mt_read_hex(g.gl_pathv[i], "device", &d) && v == 0x1af4 && d == 0x1110 &&
		    !mt_read_hex(g.gl_pathv[i], "enable", &e))
			count = (long)e;
	}
	globfree(&g);
	return count;
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
	ksft_set_plan(3 * n + 6);

	r = mt_rmmod();
	ksft_test_result(r == 0 && !loaded(), "rmmod the loaded module (%s)\n",
			 r ? strerror(-r) : "ok");
	ksft_test_result(ivshmem_enable_count() == 0,
			 "unbinding gave the ivshmem device back disabled (enable count %ld)\n",
			 ivshmem_enable_count());

	/* Probing is synchronous: insmod returns after the driver saw the device. */
	r = insmod_exactly("");
	ksft_test_result(r == 0 && loaded(), "insmod with no parameters loads (%s)\n",
			 r ? strerror(-r) : "ok");
	ksft_test_result(stat("/dev/migtime", &st) && klog_has("ivshmem device not bound"),
			 "without the opt-in the ivshmem page is not bound, and the log says why\n");
	ksft_test_result(ivshmem_enable_count() == 0,
			 "the declined ivshmem device is not left enabled (enable count %ld)\n",
			 ivshmem_enable_count());
	if (!r)
		mt_rmmod();
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
