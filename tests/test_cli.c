/* test_cli.c: the experiments' command line as a user meets it: bad keys and values exit with
 * code 2 and a message naming the key; an unknown experiment name lists the available ones.
 * These run the built binaries (make test builds every experiment first) from the repo root. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

/* Runs cmd with stderr merged into stdout; returns the exit code and the output in out. */
static int run(const char *cmd, char *out, size_t size) {
    char full[512];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    cr_assert(p, "popen %s", cmd);
    size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Test(cli, unknown_key_exits_2_and_names_it) {
    char out[4096];
    int rc = run("./build/exp/fewshot_mnist wayz=3", out, sizeof out);
    cr_assert_eq(rc, 2, "exit code %d, output: %s", rc, out);
    cr_assert(strstr(out, "wayz") && strstr(out, "ways"), "output: %s", out);
}

Test(cli, out_of_range_value_exits_2_and_gives_the_range) {
    char out[4096];
    int rc = run("./build/exp/fewshot_mnist ways=9", out, sizeof out);
    cr_assert_eq(rc, 2, "exit code %d, output: %s", rc, out);
    cr_assert(strstr(out, "ways") && strstr(out, "[2, 5]"), "output: %s", out);
    rc = run("./build/exp/fewshot_mnist inner_lr=fast", out, sizeof out);
    cr_assert_eq(rc, 2, "exit code %d, output: %s", rc, out);
    cr_assert(strstr(out, "inner_lr"), "output: %s", out);
    rc = run("./build/exp/fewshot_mnist arch=resnet", out, sizeof out);
    cr_assert_eq(rc, 2, "exit code %d, output: %s", rc, out);
    cr_assert(strstr(out, "strided|pool"), "output: %s", out);
}

Test(cli, missing_data_is_a_clear_error) {
    char out[4096];
    int rc = run("./build/exp/fewshot_mnist data=/nonexistent/mnist", out, sizeof out);
    cr_assert_eq(rc, 1, "exit code %d, output: %s", rc, out);
    cr_assert(strstr(out, "/nonexistent/mnist") && strstr(out, "make deps"), "output: %s", out);
}

Test(cli, unknown_experiment_lists_the_available_ones) {
    char out[4096];
    int rc = run("make --no-print-directory exp NAME=nope", out, sizeof out);
    cr_assert_neq(rc, 0, "output: %s", out);
    cr_assert(strstr(out, "fewshot_mnist") && strstr(out, "tutorial"), "output: %s", out);
}
