/* testing.h - what every test binary shares: one slowdown factor for its
 * timeouts, and skips that are never mistaken for passes.
 *
 * Slowdown: HATCH_TEST_SLOWDOWN (a number >= 1, default 1) multiplies every
 * timeout a test waits with: t_ms() for the waits a test makes itself,
 * and, through main() in test_main.c, every Criterion suite's and test's
 * .timeout. scripts/test raises it when the suites run under QEMU's
 * emulator (scripts/vm), where everything is 5-20x slower; a passing test
 * never waits its timeouts out, so a factor costs nothing natively.
 *
 * Skips: t_skip() prints "SKIPPED: suite::test: why" to stderr before it
 * skips, so ctest (SKIP_REGULAR_EXPRESSION "SKIPPED: ", set on every entry
 * in tests/CMakeLists.txt) reports the entry as skipped, not passed, and
 * scripts/test under CI=true fails the run.
 */
#ifndef HATCHERY_TESTING_H
#define HATCHERY_TESTING_H

#include <criterion/criterion.h>
#include <stdio.h>

/* HATCH_TEST_SLOWDOWN, parsed once; 1 when unset or not a number in 1..1000. */
double t_slowdown(void);

/* ms scaled by the slowdown factor (saturating). */
unsigned t_ms(unsigned ms);

#define t_skip(...)                                                            \
	do {                                                                   \
		fprintf(stderr, "SKIPPED: %s::%s: ",                           \
			criterion_current_suite ? criterion_current_suite->name : "?", \
			criterion_current_test ? criterion_current_test->name : "?");  \
		fprintf(stderr, __VA_ARGS__);                                  \
		fputc('\n', stderr);                                           \
		cr_skip_test(__VA_ARGS__);                                     \
	} while (0)

#endif
