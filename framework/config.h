/* config.h: key=value configuration for experiments.
 *
 * An experiment declares its keys in a table (name, type, default, valid range or choices, help).
 * fw_config_parse reads "key=value" arguments; an unknown key or a bad value is FW_ERR_ARG with a
 * message naming the key and what it accepts. Experiments exit with code 2 on that error.
 */
#ifndef FW_CONFIG_H
#define FW_CONFIG_H

#include "framework/base.h"

typedef enum fw_cfg_type { FW_CFG_INT, FW_CFG_FLOAT, FW_CFG_STR, FW_CFG_CHOICE } fw_cfg_type;

typedef struct fw_cfg_key {
    const char *name;
    fw_cfg_type type;
    const char *def;     /* default, as text ("5", "0.4", "strided")                   */
    double min, max;     /* inclusive range for INT and FLOAT                          */
    const char *choices; /* CHOICE only: "strided|pool"                                */
    const char *help;
} fw_cfg_key;

#define FW_CFG_MAX_KEYS 64

typedef struct fw_config {
    const fw_cfg_key *keys; /* borrowed: the experiment's static table */
    int n;
    char *text[FW_CFG_MAX_KEYS]; /* owned; resolved value of each key as text */
    double num[FW_CFG_MAX_KEYS]; /* parsed value for INT and FLOAT keys       */
} fw_config;

/* Applies defaults, then each argv[i] of the form key=value (argv[0] is skipped). "help" or
 * "--help" returns FW_ERR_ARG with the help text in fw_last_error(). */
fw_status fw_config_parse(fw_config *c, const fw_cfg_key *keys, int n, int argc, char **argv);
/* Lookup by name; an unknown name is a programmer error (abort). */
long fw_cfg_int(const fw_config *c, const char *name);
double fw_cfg_float(const fw_config *c, const char *name);
const char *fw_cfg_str(const fw_config *c, const char *name); /* STR and CHOICE */
/* Prints "key = value" lines, one per key. */
void fw_config_print(const fw_config *c, FILE *f);
/* Help text: every key with its default, range and description. */
void fw_config_usage(const fw_cfg_key *keys, int n, FILE *f);
void fw_config_free(fw_config *c);

#endif
