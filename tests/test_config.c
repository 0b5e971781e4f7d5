/* test_config.c: key=value parsing, validation messages, accessors and printing. */
#include "framework/config.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>

static const fw_cfg_key keys[] = {
    {"ways", FW_CFG_INT, "5", 2, 20, NULL, "classes per episode"},
    {"shots", FW_CFG_INT, "1", 1, 50, NULL, "labelled examples per class"},
    {"inner_lr", FW_CFG_FLOAT, "0.4", 0, 10, NULL, "inner-loop learning rate"},
    {"arch", FW_CFG_CHOICE, "strided", 0, 0, "strided|pool", "downsampling"},
    {"tag", FW_CFG_STR, "", 0, 0, NULL, "free text for the run name"},
};
#define N_KEYS ((int)FW_COUNTOF(keys))

/* Parses the NULL-terminated argument list that follows the program name. */
#define PARSE(cfg, ...)                                                                        \
    parse_args((cfg), (char *[]){"prog", __VA_ARGS__, NULL})

static fw_status parse_args(fw_config *c, char **argv) {
    int argc = 0;
    while (argv[argc])
        argc++;
    return fw_config_parse(c, keys, N_KEYS, argc, argv);
}

/* Expects FW_ERR_ARG and a message containing every given fragment. */
static void expect_arg_error(fw_status s, const char *const *fragments, int n) {
    const char *msg = fw_last_error();
    cr_assert_eq(s, FW_ERR_ARG, "expected FW_ERR_ARG, got %s (message: '%s')", fw_status_str(s),
                 msg);
    for (int i = 0; i < n; i++)
        cr_expect(strstr(msg, fragments[i]) != NULL, "message '%s' should contain '%s'", msg,
                  fragments[i]);
}
#define EXPECT_ARG_ERROR(s, ...)                                                               \
    expect_arg_error((s), (const char *const[]){__VA_ARGS__},                                  \
                     (int)FW_COUNTOF(((const char *const[]){__VA_ARGS__})))

Test(config, defaults_apply) {
    fw_config c;
    char *argv[] = {"prog"};
    cr_assert_eq(fw_config_parse(&c, keys, N_KEYS, 1, argv), FW_OK, "%s", fw_last_error());
    cr_expect_eq(fw_cfg_int(&c, "ways"), 5);
    cr_expect_eq(fw_cfg_int(&c, "shots"), 1);
    cr_expect_float_eq(fw_cfg_float(&c, "inner_lr"), 0.4, 1e-15);
    cr_expect_str_eq(fw_cfg_str(&c, "arch"), "strided");
    cr_expect_str_eq(fw_cfg_str(&c, "tag"), "");
    fw_config_free(&c);
}

Test(config, no_arguments_at_all) {
    fw_config c;
    cr_assert_eq(fw_config_parse(&c, keys, N_KEYS, 0, NULL), FW_OK, "%s", fw_last_error());
    cr_expect_eq(fw_cfg_int(&c, "ways"), 5);
    fw_config_free(&c);
}

Test(config, overrides_parse) {
    fw_config c;
    fw_status s = PARSE(&c, "ways=20", "inner_lr=1e-3", "arch=pool", "tag=a b=c", "shots=-0");
    cr_assert_eq(s, FW_ERR_ARG, "shots=-0 is 0, below the minimum 1");
    s = PARSE(&c, "ways=20", "inner_lr=1e-3", "arch=pool", "tag=a b=c", "shots=+3");
    cr_assert_eq(s, FW_OK, "%s", fw_last_error());
    cr_expect_eq(fw_cfg_int(&c, "ways"), 20);
    cr_expect_eq(fw_cfg_int(&c, "shots"), 3);
    cr_expect_float_eq(fw_cfg_float(&c, "inner_lr"), 1e-3, 1e-18);
    cr_expect_str_eq(fw_cfg_str(&c, "arch"), "pool");
    cr_expect_str_eq(fw_cfg_str(&c, "tag"), "a b=c", "only the first '=' splits key and value");
    fw_config_free(&c);
}

Test(config, range_bounds_are_inclusive) {
    fw_config c;
    cr_assert_eq(PARSE(&c, "ways=2", "inner_lr=0"), FW_OK, "%s", fw_last_error());
    fw_config_free(&c);
    cr_assert_eq(PARSE(&c, "ways=20", "inner_lr=10"), FW_OK, "%s", fw_last_error());
    fw_config_free(&c);
}

Test(config, unknown_key) {
    fw_config c;
    EXPECT_ARG_ERROR(PARSE(&c, "wayz=5"), "unknown key 'wayz'", "ways", "shots", "inner_lr",
                     "arch", "tag");
    fw_config_free(&c); /* safe after an error */
}

Test(config, out_of_range_int) {
    fw_config c;
    EXPECT_ARG_ERROR(PARSE(&c, "ways=21"), "ways=21", "expected an integer in [2, 20]");
    EXPECT_ARG_ERROR(PARSE(&c, "ways=1"), "ways=1", "[2, 20]");
    EXPECT_ARG_ERROR(PARSE(&c, "ways=99999999999999999999999"), "ways=", "[2, 20]");
}

Test(config, out_of_range_float) {
    fw_config c;
    EXPECT_ARG_ERROR(PARSE(&c, "inner_lr=-1"), "inner_lr=-1: expected a number in [0, 10]");
    EXPECT_ARG_ERROR(PARSE(&c, "inner_lr=10.5"), "inner_lr=10.5", "[0, 10]");
}

Test(config, non_numeric) {
    fw_config c;
    EXPECT_ARG_ERROR(PARSE(&c, "ways=abc"), "ways=abc: expected an integer in [2, 20]");
    EXPECT_ARG_ERROR(PARSE(&c, "ways=5x"), "ways=5x", "integer");
    EXPECT_ARG_ERROR(PARSE(&c, "ways=5.0"), "ways=5.0", "integer");
    EXPECT_ARG_ERROR(PARSE(&c, "ways="), "ways=", "integer");
    EXPECT_ARG_ERROR(PARSE(&c, "ways= 5"), "ways= 5", "integer");
    EXPECT_ARG_ERROR(PARSE(&c, "inner_lr=fast"), "inner_lr=fast", "expected a number");
    EXPECT_ARG_ERROR(PARSE(&c, "inner_lr=nan"), "inner_lr=nan", "expected a number");
    EXPECT_ARG_ERROR(PARSE(&c, "inner_lr=inf"), "inner_lr=inf", "expected a number");
}

Test(config, bad_choice_lists_choices) {
    fw_config c;
    EXPECT_ARG_ERROR(PARSE(&c, "arch=foo"), "arch=foo: expected one of strided|pool");
    EXPECT_ARG_ERROR(PARSE(&c, "arch=stride"), "arch=stride", "strided|pool");
    EXPECT_ARG_ERROR(PARSE(&c, "arch=strided|pool"), "strided|pool");
}

Test(config, missing_equals) {
    fw_config c;
    EXPECT_ARG_ERROR(PARSE(&c, "foo"), "expected key=value, got 'foo'");
}

Test(config, last_duplicate_wins) {
    fw_config c;
    /* the last values differ from both the defaults and the earlier values */
    cr_assert_eq(PARSE(&c, "ways=3", "arch=strided", "ways=7", "arch=pool"), FW_OK, "%s",
                 fw_last_error());
    cr_expect_eq(fw_cfg_int(&c, "ways"), 7);
    cr_expect_str_eq(fw_cfg_str(&c, "arch"), "pool");
    fw_config_free(&c);
}

Test(config, bad_value_fails_even_if_overridden_later) {
    fw_config c;
    EXPECT_ARG_ERROR(PARSE(&c, "ways=100", "ways=5"), "ways=100");
}

Test(config, long_input_keeps_message_short) {
    char arg[3000];
    memset(arg, 'x', sizeof arg - 1);
    arg[sizeof arg - 1] = '\0';
    memcpy(arg, "ways=", 5);
    fw_config c;
    EXPECT_ARG_ERROR(PARSE(&c, arg), "ways=xxx", "[2, 20]");
    cr_expect_lt(strlen(fw_last_error()), 1000);
}

Test(config, help_gives_usage) {
    const char *forms[] = {"help", "--help", "-h"};
    for (size_t i = 0; i < FW_COUNTOF(forms); i++) {
        fw_config c;
        /* help wins even over a bad argument before it */
        fw_status s = parse_args(&c, (char *[]){"prog", "ways=abc", (char *)forms[i], NULL});
        EXPECT_ARG_ERROR(s, "usage: prog", "ways", "integer in [2, 20]", "inner_lr",
                         "one of strided|pool", "default 5", "classes per episode");
    }
}

Test(config, help_for_a_big_table_fits_the_message) {
    static char names[FW_CFG_MAX_KEYS][16];
    static fw_cfg_key big[FW_CFG_MAX_KEYS];
    for (int i = 0; i < FW_CFG_MAX_KEYS; i++) {
        snprintf(names[i], sizeof names[i], "key_%02d", i);
        big[i] = (fw_cfg_key){names[i], FW_CFG_FLOAT, "0.5", 0, 1, NULL,
                              "a long description that cannot fit sixty-four times"};
    }
    fw_config c;
    char *argv[] = {"prog", "--help", NULL};
    fw_status s = fw_config_parse(&c, big, FW_CFG_MAX_KEYS, 2, argv);
    const char *msg = fw_last_error();
    cr_expect_eq(s, FW_ERR_ARG);
    cr_expect_lt(strlen(msg), 1023, "message must fit the 1024-byte buffer (%zu)", strlen(msg));
    cr_expect(strncmp(msg, "usage: prog", 11) == 0 && strstr(msg, "key_00") != NULL,
              "message should start with usage and list keys: %s", msg);
    cr_expect(strstr(msg, "fw_config_usage") != NULL, "a cut text should say so: %s", msg);
}

Test(config, print_is_aligned) {
    fw_config c;
    cr_assert_eq(PARSE(&c, "ways=7", "tag=hello"), FW_OK, "%s", fw_last_error());
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    fw_config_print(&c, f);
    fclose(f);
    const char *expected = "  ways     = 7\n"
                           "  shots    = 1\n"
                           "  inner_lr = 0.4\n"
                           "  arch     = strided\n"
                           "  tag      = hello\n";
    cr_expect_str_eq(buf, expected);
    free(buf);
    fw_config_free(&c);
}

Test(config, usage_lists_everything) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    fw_config_usage(keys, N_KEYS, f);
    fclose(f);
    const char *want[] = {"ways", "integer in [2, 20]", "default 5", "classes per episode",
                          "inner_lr", "number in [0, 10]", "default 0.4",
                          "one of strided|pool", "default strided", "tag", "text"};
    for (size_t i = 0; i < FW_COUNTOF(want); i++)
        cr_expect(strstr(buf, want[i]) != NULL, "usage should contain '%s':\n%s", want[i], buf);
    free(buf);
}

/* ---- programmer errors abort ---- */

Test(config, int_accessor_on_float_key_aborts, .signal = SIGABRT) {
    fw_config c;
    cr_assert_eq(PARSE(&c, "ways=3"), FW_OK);
    fw_cfg_int(&c, "inner_lr");
}

Test(config, float_accessor_on_int_key_aborts, .signal = SIGABRT) {
    fw_config c;
    cr_assert_eq(PARSE(&c, "ways=3"), FW_OK);
    fw_cfg_float(&c, "ways");
}

Test(config, str_accessor_on_int_key_aborts, .signal = SIGABRT) {
    fw_config c;
    cr_assert_eq(PARSE(&c, "ways=3"), FW_OK);
    fw_cfg_str(&c, "ways");
}

Test(config, unknown_name_aborts, .signal = SIGABRT) {
    fw_config c;
    cr_assert_eq(PARSE(&c, "ways=3"), FW_OK);
    fw_cfg_int(&c, "wayz");
}

Test(config, bad_default_aborts, .signal = SIGABRT) {
    static const fw_cfg_key bad[] = {{"ways", FW_CFG_INT, "50", 2, 20, NULL, "too big"}};
    fw_config c;
    char *argv[] = {"prog"};
    fw_config_parse(&c, bad, 1, 1, argv);
}

Test(config, bad_choice_default_aborts, .signal = SIGABRT) {
    static const fw_cfg_key bad[] = {{"arch", FW_CFG_CHOICE, "conv", 0, 0, "strided|pool", ""}};
    fw_config_usage(bad, 1, stderr);
}
