// SPDX-License-Identifier: GPL-2.0
/*
 * mt_nobind - the module must leave an ivshmem device alone when its page is
 * not a migtime ABI v1 page (the host wrote a bad header before boot).
 *
 * reason=magic|version|size names the expected rejection; the module logs
 * "no migtime page (BadMagic(..)|BadVersion(..)|BadSize(..)), not binding".
 */
#define _GNU_SOURCE
#include <sys/klog.h>
#include <sys/stat.h>

#include "kselftest.h"
#include "mt_page.h"

static char klog[1 << 20];

int main(int argc, char **argv)
{
	const char *reason = NULL, *tag;
	struct stat st;
	int n;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		if (!strncmp(argv[i], "reason=", 7))
			reason = argv[i] + 7;
		else
			ksft_exit_fail_msg("unknown argument '%s'\n", argv[i]);
	}
	if (!reason)
		ksft_exit_fail_msg("usage: mt_nobind reason=magic|version|size\n");
	tag = !strcmp(reason, "magic") ? "no migtime page (BadMagic(" :
	      !strcmp(reason, "version") ? "no migtime page (BadVersion(" :
	      !strcmp(reason, "size") ? "no migtime page (BadSize(" : NULL;
	if (!tag)
		ksft_exit_fail_msg("unknown reason '%s'\n", reason);

	ksft_print_header();
	ksft_set_plan(4);
	n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, klog, sizeof(klog) - 1);
	if (n < 0)
		ksft_exit_fail_msg("klogctl: %s\n", strerror(errno));
	klog[n] = 0;

	ksft_test_result(stat("/dev/migtime", &st) && errno == ENOENT,
			 "/dev/migtime does not exist\n");
	ksft_test_result(stat("/sys/kernel/debug/migtime", &st) && errno == ENOENT,
			 "no debugfs migtime directory\n");
	ksft_test_result(strstr(klog, tag) != NULL, "kernel log says why: \"%s...\"\n", tag);
	ksft_test_result(strstr(klog, "bound: mode=") == NULL, "kernel log has no bind line\n");
	ksft_finished();
}
