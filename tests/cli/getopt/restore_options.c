/* The option loops of iptables 1.8.9's iptables-restore.c (legacy) and
 * xtables-restore.c (nft), with exit() turned into a result line, so that glibc's own
 * getopt_long decides. Built and run by tests/cli/getopt_differential.rs.
 * Input: one case per line, "L" or "N", then the arguments, each after a \x1f.
 * Output: one line per case: "help", "rejected", or
 * "noflush=N test=N table=[T] input=[FILE]" ("<none>" and "<stdin>" where absent). */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct option legacy_options[] = {
	{.name = "counters",      .has_arg = 0, .val = 'c'},
	{.name = "verbose",       .has_arg = 0, .val = 'v'},
	{.name = "version",       .has_arg = 0, .val = 'V'},
	{.name = "test",          .has_arg = 0, .val = 't'},
	{.name = "help",          .has_arg = 0, .val = 'h'},
	{.name = "noflush",       .has_arg = 0, .val = 'n'},
	{.name = "modprobe",      .has_arg = 1, .val = 'M'},
	{.name = "table",         .has_arg = 1, .val = 'T'},
	{.name = "wait",          .has_arg = 2, .val = 'w'},
	{.name = "wait-interval", .has_arg = 2, .val = 'W'},
	{NULL},
};

static const struct option nft_options[] = {
	{.name = "counters", .has_arg = 0, .val = 'c'},
	{.name = "verbose",  .has_arg = 0, .val = 'v'},
	{.name = "version",  .has_arg = 0, .val = 'V'},
	{.name = "test",     .has_arg = 0, .val = 't'},
	{.name = "help",     .has_arg = 0, .val = 'h'},
	{.name = "noflush",  .has_arg = 0, .val = 'n'},
	{.name = "modprobe", .has_arg = 1, .val = 'M'},
	{.name = "table",    .has_arg = 1, .val = 'T'},
	{.name = "ipv4",     .has_arg = 0, .val = '4'},
	{.name = "ipv6",     .has_arg = 0, .val = '6'},
	{.name = "wait",          .has_arg = 2, .val = 'w'},
	{.name = "wait-interval", .has_arg = 2, .val = 'W'},
	{NULL},
};

static int xs_has_arg(int argc, char *argv[])
{
	return optind < argc && argv[optind][0] != '-' && argv[optind][0] != '!';
}

static void parse(int legacy, int argc, char *argv[])
{
	int c, noflush = 0, testing = 0, wait;
	unsigned int usec;
	const char *table = NULL, *arg;

	optind = 0; /* a full re-initialisation, POSIXLY_CORRECT read again */
	opterr = 0;
	while ((c = getopt_long(argc, argv, legacy ? "bcvVthnwWM:T:" : "bcvVthnM:T:wW",
				legacy ? legacy_options : nft_options, NULL)) != -1) {
		switch (c) {
		case 'b': case 'c': case 'v': case 'M':
			break;
		case 'V': case 'h':
			puts("help");
			return;
		case 't':
			testing = 1;
			break;
		case 'n':
			noflush = 1;
			break;
		case 'T':
			table = optarg;
			break;
		case 'w':
			if (!legacy) {
				if (!optarg && xs_has_arg(argc, argv))
					optind++;
			} else if (optarg) {
				if (sscanf(optarg, "%i", &wait) != 1)
					goto rejected;
			} else if (xs_has_arg(argc, argv)) {
				if (sscanf(argv[optind++], "%i", &wait) != 1)
					goto rejected;
			}
			break;
		case 'W':
			if (!legacy) {
				if (!optarg && xs_has_arg(argc, argv))
					optind++;
				break;
			}
			if (optarg)
				arg = optarg;
			else if (xs_has_arg(argc, argv))
				arg = argv[optind++];
			else
				goto rejected;
			if (sscanf(arg, "%u", &usec) != 1 || usec > 999999)
				goto rejected;
			break;
		default:
			goto rejected;
		}
	}
	if (optind < argc - 1)
		goto rejected;
	printf("noflush=%d test=%d table=[%s] input=[%s]\n", noflush, testing,
	       table ? table : "<none>", optind == argc - 1 ? argv[optind] : "<stdin>");
	return;
rejected:
	puts("rejected");
}

int main(void)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;

	while ((len = getline(&line, &cap, stdin)) > 0) {
		char *argv[256];
		int argc = 0;
		char *p;

		if (line[len - 1] == '\n')
			line[--len] = '\0';
		argv[argc++] = "iptables-restore";
		for (p = strchr(line, '\x1f'); p && argc < 255; p = strchr(p, '\x1f')) {
			*p++ = '\0';
			argv[argc++] = p;
		}
		argv[argc] = NULL;
		parse(line[0] == 'L', argc, argv);
		fflush(stdout);
	}
	return 0;
}
