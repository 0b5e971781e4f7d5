/* config.c: key=value configuration for experiments.
 *
 * Every key keeps its resolved value as text (so printing and logging show exactly what was
 * given); INT and FLOAT keys also keep the parsed number. Values are checked when parsed, and the
 * defaults are checked the same way: a bad default is a bug in the experiment's table (abort).
 *
 * "help", "--help" or "-h" anywhere in argv: FW_ERR_ARG with the usage text (no trailing newline)
 * in fw_last_error(). That buffer holds 1024 bytes, so a big table gets the text without the key
 * descriptions, and if that is still too long, whole lines up to the limit and a note saying so.
 */
#include "framework/config.h"

#include <errno.h>
#include <math.h>
#include <string.h>

/* fw_last_error holds 1024 bytes; messages stay below this so nothing is cut mid-word. */
#define MSG_MAX 1000
/* User text echoed back in a message is cut to this many characters. */
#define ECHO_MAX 64

/* ---- small string helpers ---- */

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* Is `value` one of the '|'-separated words in `choices`? */
static bool is_choice(const char *choices, const char *value) {
    size_t len = strlen(value);
    const char *p = choices;
    for (;;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && strncmp(p, value, n) == 0)
            return true;
        if (!bar)
            return false;
        p = bar + 1;
    }
}

static int find_key(const fw_cfg_key *keys, int n, const char *name, size_t name_len) {
    for (int i = 0; i < n; i++)
        if (strlen(keys[i].name) == name_len && strncmp(keys[i].name, name, name_len) == 0)
            return i;
    return -1;
}

/* ---- value parsing ---- */

/* strtol/strtod skip leading blanks; we want "ways= 5" rejected, not silently accepted. */
static bool starts_like_number(const char *s) {
    return s[0] != '\0' && strchr(" \t\n\r\f\v", s[0]) == NULL;
}

/* Whole text must be a base-10 integer that fits in a long. */
static bool read_long(const char *s, long *out) {
    if (!starts_like_number(s))
        return false;
    char *end;
    errno = 0;
    *out = strtol(s, &end, 10);
    return *end == '\0' && errno == 0;
}

/* Whole text must be a finite number. */
static bool read_double(const char *s, double *out) {
    if (!starts_like_number(s))
        return false;
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    return *end == '\0' && errno == 0 && isfinite(*out);
}

static fw_status parse_int(const fw_cfg_key *k, const char *s, double *out) {
    long v;
    if (!read_long(s, &v) || (double)v < k->min || (double)v > k->max)
        return fw_errorf(FW_ERR_ARG, "%s=%.*s: expected an integer in [%.0f, %.0f]", k->name,
                         ECHO_MAX, s, k->min, k->max);
    *out = (double)v;
    return FW_OK;
}

static fw_status parse_float(const fw_cfg_key *k, const char *s, double *out) {
    double v;
    if (!read_double(s, &v) || v < k->min || v > k->max)
        return fw_errorf(FW_ERR_ARG, "%s=%.*s: expected a number in [%g, %g]", k->name,
                         ECHO_MAX, s, k->min, k->max);
    *out = v;
    return FW_OK;
}

/* Checks `s` against key `k`; INT and FLOAT values are stored in *num, others leave it 0. */
static fw_status parse_value(const fw_cfg_key *k, const char *s, double *num) {
    *num = 0;
    switch (k->type) {
    case FW_CFG_INT: return parse_int(k, s, num);
    case FW_CFG_FLOAT: return parse_float(k, s, num);
    case FW_CFG_STR: return FW_OK;
    case FW_CFG_CHOICE:
        if (is_choice(k->choices, s))
            return FW_OK;
        return fw_errorf(FW_ERR_ARG, "%s=%.*s: expected one of %.*s", k->name, ECHO_MAX, s,
                         MSG_MAX / 2, k->choices);
    }
    FW_ASSERT(false, "key '%s' has unknown type %d", k->name, (int)k->type);
}

/* ---- table checks (programmer errors) ---- */

static void check_table(const fw_cfg_key *keys, int n) {
    FW_ASSERT(n >= 0 && n <= FW_CFG_MAX_KEYS, "n=%d keys, at most %d", n, FW_CFG_MAX_KEYS);
    FW_ASSERT(n == 0 || keys != NULL, "keys is NULL but n=%d", n);
    for (int i = 0; i < n; i++) {
        const fw_cfg_key *k = &keys[i];
        FW_ASSERT(k->name && k->name[0] && !strchr(k->name, '='), "key %d has a bad name", i);
        FW_ASSERT(find_key(keys, i, k->name, strlen(k->name)) < 0, "key '%s' declared twice",
                  k->name);
        FW_ASSERT(k->def != NULL, "key '%s' has no default", k->name);
        FW_ASSERT(k->type >= FW_CFG_INT && k->type <= FW_CFG_CHOICE, "key '%s': bad type %d",
                  k->name, (int)k->type);
        if (k->type == FW_CFG_INT || k->type == FW_CFG_FLOAT)
            FW_ASSERT(k->min <= k->max, "key '%s': min %g > max %g", k->name, k->min, k->max);
        if (k->type == FW_CFG_CHOICE)
            FW_ASSERT(k->choices && k->choices[0], "CHOICE key '%s' has no choices", k->name);
        double num;
        FW_ASSERT(parse_value(k, k->def, &num) == FW_OK, "bad default for key '%s': %s",
                  k->name, fw_last_error());
    }
}

/* ---- usage text ---- */

/* "integer in [2, 20]", "number in [0, 10]", "text", "one of strided|pool". */
static void describe_type(const fw_cfg_key *k, char *buf, size_t size) {
    switch (k->type) {
    case FW_CFG_INT: snprintf(buf, size, "integer in [%.0f, %.0f]", k->min, k->max); break;
    case FW_CFG_FLOAT: snprintf(buf, size, "number in [%g, %g]", k->min, k->max); break;
    case FW_CFG_STR: snprintf(buf, size, "text"); break;
    case FW_CFG_CHOICE: snprintf(buf, size, "one of %s", k->choices); break;
    }
}

/* with_help=false gives a shorter text (used when the full one does not fit in a message). */
static void write_usage(const fw_cfg_key *keys, int n, const char *prog, bool with_help,
                        FILE *f) {
    int wname = 0, wtype = 0, wdef = 0;
    char type[256];
    for (int i = 0; i < n; i++) {
        describe_type(&keys[i], type, sizeof type);
        int ln = (int)strlen(keys[i].name), lt = (int)strlen(type), ld = (int)strlen(keys[i].def);
        wname = ln > wname ? ln : wname;
        wtype = lt > wtype ? lt : wtype;
        wdef = ld > wdef ? ld : wdef;
    }
    fprintf(f, "usage: %s [key=value ...]\nkeys:\n", prog ? prog : "<program>");
    for (int i = 0; i < n; i++) {
        describe_type(&keys[i], type, sizeof type);
        fprintf(f, "  %-*s  %-*s  default %-*s", wname, keys[i].name, wtype, type, wdef,
                keys[i].def);
        if (with_help && keys[i].help && keys[i].help[0])
            fprintf(f, "  %s", keys[i].help);
        fputc('\n', f);
    }
}

void fw_config_usage(const fw_cfg_key *keys, int n, FILE *f) {
    check_table(keys, n);
    FW_ASSERT(f != NULL, "f is NULL");
    write_usage(keys, n, NULL, true, f);
}

/* Renders the usage into a heap string (NULL on failure). */
static char *usage_string(const fw_cfg_key *keys, int n, const char *prog, bool with_help) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    write_usage(keys, n, prog, with_help, f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* Help requested: the usage goes into fw_last_error. That buffer is small, so a long table falls
 * back to the text without descriptions, and finally to a cut text that says so. */
static fw_status help_error(const fw_cfg_key *keys, int n, const char *prog) {
    char *text = usage_string(keys, n, prog, true);
    if (text && strlen(text) > MSG_MAX) {
        free(text);
        text = usage_string(keys, n, prog, false);
    }
    if (!text)
        return fw_errorf(FW_ERR_ARG, "usage: %s [key=value ...] (usage text unavailable)",
                         prog ? prog : "<program>");
    size_t len = strlen(text);
    if (len > 0 && text[len - 1] == '\n') /* callers add their own newline */
        text[len - 1] = '\0';
    const char *more = "\n  ... (cut; the experiment can print all keys with fw_config_usage)";
    if (strlen(text) > MSG_MAX) { /* keep whole lines only */
        text[MSG_MAX - strlen(more)] = '\0';
        char *last_nl = strrchr(text, '\n');
        if (last_nl)
            *last_nl = '\0';
    } else {
        more = "";
    }
    fw_status s = fw_errorf(FW_ERR_ARG, "%s%s", text, more);
    free(text);
    return s;
}

static bool is_help(const char *arg) {
    return strcmp(arg, "help") == 0 || strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

/* ---- parsing ---- */

static fw_status unknown_key(const fw_cfg_key *keys, int n, const char *name, size_t len) {
    char known[MSG_MAX / 2 + 8];
    size_t used = 0;
    known[0] = '\0';
    for (int i = 0; i < n; i++) {
        size_t ln = strlen(keys[i].name);
        if (used + ln + 2 > MSG_MAX / 2) { /* keep the message under MSG_MAX */
            snprintf(known + used, sizeof known - used, " ...");
            break;
        }
        used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", i ? " " : "",
                                 keys[i].name);
    }
    int shown = len > ECHO_MAX ? ECHO_MAX : (int)len;
    return fw_errorf(FW_ERR_ARG, "unknown key '%.*s'; known keys: %s", shown, name, known);
}

/* Stores a copy of `value` as key i's text; the previous text (default or earlier arg) goes. */
static fw_status set_text(fw_config *c, int i, const char *value) {
    char *copy = dup_str(value);
    if (!copy)
        return fw_errorf(FW_ERR_NOMEM, "out of memory storing config key '%s'", c->keys[i].name);
    free(c->text[i]);
    c->text[i] = copy;
    return FW_OK;
}

static fw_status apply_arg(fw_config *c, const char *arg) {
    const char *eq = strchr(arg, '=');
    if (!eq)
        return fw_errorf(FW_ERR_ARG, "expected key=value, got '%.*s'", ECHO_MAX, arg);
    int i = find_key(c->keys, c->n, arg, (size_t)(eq - arg));
    if (i < 0)
        return unknown_key(c->keys, c->n, arg, (size_t)(eq - arg));
    FW_TRY(parse_value(&c->keys[i], eq + 1, &c->num[i]));
    return set_text(c, i, eq + 1);
}

static fw_status apply_all(fw_config *c, int argc, char **argv) {
    for (int i = 0; i < c->n; i++) {
        FW_TRY(parse_value(&c->keys[i], c->keys[i].def, &c->num[i]));
        FW_TRY(set_text(c, i, c->keys[i].def));
    }
    for (int a = 1; a < argc; a++) /* in order, so a repeated key ends with its last value */
        FW_TRY(apply_arg(c, argv[a]));
    return FW_OK;
}

/* On error *c is left empty (nothing to free; fw_config_free is still safe). */
fw_status fw_config_parse(fw_config *c, const fw_cfg_key *keys, int n, int argc, char **argv) {
    FW_ASSERT(c != NULL, "c is NULL");
    FW_ASSERT(argc >= 0 && (argc == 0 || argv != NULL), "argc=%d argv=%p", argc, (void *)argv);
    check_table(keys, n);
    memset(c, 0, sizeof *c);
    c->keys = keys;
    c->n = n;
    /* Help wins over any other argument, even a bad one: the user asked what is accepted. */
    for (int a = 1; a < argc; a++)
        if (is_help(argv[a]))
            return help_error(keys, n, argc > 0 ? argv[0] : NULL);
    fw_status s = apply_all(c, argc, argv);
    if (s != FW_OK)
        fw_config_free(c);
    return s;
}

/* ---- lookup ---- */

static int lookup(const fw_config *c, const char *name) {
    FW_ASSERT(c != NULL && c->keys != NULL, "config not parsed");
    FW_ASSERT(name != NULL, "name is NULL");
    int i = find_key(c->keys, c->n, name, strlen(name));
    FW_ASSERT(i >= 0, "unknown config key '%s'", name);
    FW_ASSERT(c->text[i] != NULL, "config key '%s' has no value", name);
    return i;
}

long fw_cfg_int(const fw_config *c, const char *name) {
    int i = lookup(c, name);
    FW_ASSERT(c->keys[i].type == FW_CFG_INT, "config key '%s' is not an INT key", name);
    return (long)c->num[i];
}

double fw_cfg_float(const fw_config *c, const char *name) {
    int i = lookup(c, name);
    FW_ASSERT(c->keys[i].type == FW_CFG_FLOAT, "config key '%s' is not a FLOAT key", name);
    return c->num[i];
}

const char *fw_cfg_str(const fw_config *c, const char *name) {
    int i = lookup(c, name);
    FW_ASSERT(c->keys[i].type == FW_CFG_STR || c->keys[i].type == FW_CFG_CHOICE,
              "config key '%s' is not a STR or CHOICE key", name);
    return c->text[i];
}

void fw_config_print(const fw_config *c, FILE *f) {
    FW_ASSERT(c != NULL && c->keys != NULL && f != NULL, "config not parsed or f is NULL");
    int width = 0;
    for (int i = 0; i < c->n; i++) {
        int len = (int)strlen(c->keys[i].name);
        width = len > width ? len : width;
    }
    for (int i = 0; i < c->n; i++)
        fprintf(f, "  %-*s = %s\n", width, c->keys[i].name, c->text[i]);
}

void fw_config_free(fw_config *c) {
    if (!c)
        return;
    for (int i = 0; i < FW_CFG_MAX_KEYS; i++) {
        free(c->text[i]);
        c->text[i] = NULL;
    }
    c->keys = NULL;
    c->n = 0;
}
