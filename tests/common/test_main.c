/* test_main.c - main() of every test binary: Criterion's own, plus the
 * slowdown factor (testing.h) applied to every suite's and test's
 * .timeout and to the default one, so a timeout written for a native run
 * holds under the emulator too. */
#include <criterion/criterion.h>
#include <criterion/internal/ordered-set.h>
#include <criterion/options.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "testing.h"

double t_slowdown(void)
{
	static double f;
	if (f == 0) {
		const char *s = getenv("HATCH_TEST_SLOWDOWN");
		char *end = NULL;
		errno = 0;
		double v = s ? strtod(s, &end) : 1;
		f = (s && (errno || end == s || *end || v < 1 || v > 1000)) ? 1 : v;
	}
	return f;
}

unsigned t_ms(unsigned ms)
{
	double v = ms * t_slowdown();
	return v >= (double)UINT_MAX ? UINT_MAX : (unsigned)v;
}

static void scale(struct criterion_test_extra_data *d, double f)
{
	if (d && d->timeout > 0)
		d->timeout *= f;
}

int main(int argc, char *argv[])
{
	struct criterion_test_set *tests = criterion_initialize();
	int rc = 0;
	if (criterion_handle_args(argc, argv, true)) {
		double f = t_slowdown();
		if (f > 1) {
			/* Criterion's FOREACH_SET, unrolled: nested, its
			 * loop variables would shadow each other. The element
			 * is stored right after its node. */
			for (struct criterion_ordered_set_node *sn = tests->suites->first;
			     sn; sn = sn->next) {
				struct criterion_suite_set *s = (void *)(sn + 1);
				scale(s->suite.data, f);
				for (struct criterion_ordered_set_node *tn =
					     s->tests ? s->tests->first : NULL;
				     tn; tn = tn->next)
					scale(((struct criterion_test *)(void *)(tn + 1))->data, f);
			}
			if (criterion_options.timeout > 0)
				criterion_options.timeout *= f;
		}
		rc = !criterion_run_all_tests(tests);
	}
	criterion_finalize(tests);
	return rc;
}
