# metagan: build, run, test.  `make help` lists the targets.
CC       ?= gcc
BUILD    ?= build
# The local dataset mirror: ../shared/datasets beside the checkout, else the workplace's copy.
DATA_MIRROR ?= $(firstword $(wildcard ../shared/datasets /work/shared/datasets) ../shared/datasets)
PYTHON   ?= /usr/bin/python3

HDF5_CFLAGS := $(shell pkg-config --cflags hdf5-serial 2>/dev/null)
HDF5_LIBS   := $(shell pkg-config --libs hdf5-serial 2>/dev/null)

CFLAGS   = -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -g -fopenmp -Wall -Wextra -MMD -MP -I. -I$(BUILD)/gen $(HDF5_CFLAGS)
LDFLAGS  = -fopenmp
LIBS     = $(HDF5_LIBS) -ldnnl -lz -lm

LIB_SRC := $(wildcard framework/*.c framework/layers/*.c models/*.c datasets/*.c)
LIB_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC))
LIB     := $(BUILD)/libmetagan.a
EXPS    := $(sort $(patsubst experiments/%.c,%,$(wildcard experiments/*.c)))
TEST_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tests/*.c tests/ref/*.c))

# Debian packages `make deps` installs (only the missing ones). The Python/Jupyter ones serve
# notebooks/ (make notebook); jupyter-notebook is for opening them interactively.
DEB_PKGS := gcc make pkg-config libdnnl-dev libhdf5-dev hdf5-tools libcriterion-dev zlib1g-dev \
            python3-h5py python3-numpy python3-torch \
            python3-pandas python3-matplotlib python3-nbformat python3-nbclient python3-ipykernel \
            jupyter-nbconvert jupyter-notebook

# The commit the binaries are built from, for the run logs (git_commit, git_dirty in
# framework/log.h). Found here rather than at run time, because a run must not fork once OpenMP
# is running. dirty: any tracked or untracked (not ignored) change. The header is rewritten only
# when its content changes, so an unchanged tree rebuilds nothing.
GITINFO    := $(BUILD)/gen/gitinfo.h
GIT_COMMIT := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
GIT_DIRTY  := $(shell if ! git rev-parse HEAD >/dev/null 2>&1; then echo -1; \
                elif [ -n "$$(git --no-optional-locks status --porcelain 2>/dev/null)" ]; then echo 1; \
                else echo 0; fi)
$(shell mkdir -p $(BUILD)/gen && \
  printf '#define FW_GIT_COMMIT "%s"\n#define FW_GIT_DIRTY (%s)\n' '$(GIT_COMMIT)' '$(GIT_DIRTY)' > $(GITINFO).new && \
  { cmp -s $(GITINFO).new $(GITINFO) && rm -f $(GITINFO).new || mv -f $(GITINFO).new $(GITINFO); })

# make notebook: the analysis notebooks executed on a run, as HTML in $(BUILD)/notebooks/.
# RUN: the run analyze_run shows; RUNS: the runs compare_runs puts side by side (default: the
# finished runs in RUN's folder).
RUN  ?= runs/fewshot_mnist/latest.h5
RUNS ?=
NB_ENV = PYDEVD_DISABLE_FILE_VALIDATION=1 RUN_FILE="$(abspath $(RUN))" \
         RUN_FILES="$(abspath $(RUNS))"

.PHONY: all help deps data exp list test bench clean notebook notebook-strip
all: $(LIB) $(addprefix $(BUILD)/exp/,$(EXPS))

help:
	@echo "make deps                      install Debian packages (missing ones only) and fetch MNIST and Omniglot"
	@echo "make                           build the library and every experiment"
	@echo "make exp NAME=<exp> ARGS=\"k=v\" build and run experiments/<exp>.c"
	@echo "make list                      list the experiments"
	@echo "make test                      build and run the Criterion test suite"
	@echo "make bench                     performance benchmark against PyTorch (about 3 minutes)"
	@echo "make notebook [RUN=f.h5] [RUNS=\"a.h5 b.h5\"]  run notebooks/ on a run log, HTML in $(BUILD)/notebooks/"
	@echo "make notebook-strip            clear the notebooks' outputs (do it before committing them)"

deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	else echo "deps: all Debian packages present"; fi
	@$(MAKE) --no-print-directory data

data:
	@sh datasets/fetch_mnist.sh "$(DATA_MIRROR)" datasets/data/mnist
	@sh datasets/fetch_omniglot.sh "$(DATA_MIRROR)" datasets/data/omniglot

$(BUILD)/framework/log.o $(BUILD)/framework/ckpt.o: $(GITINFO)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/exp/%: $(BUILD)/experiments/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LIBS) -o $@

list:
	@echo "experiments: $(EXPS)"

exp:
	@if [ -z "$(NAME)" ] || [ ! -f "experiments/$(NAME).c" ]; then \
	  echo "unknown experiment '$(NAME)'; available: $(EXPS)"; \
	  echo "usage: make exp NAME=<experiment> ARGS=\"key=value ...\""; exit 2; fi
	@$(MAKE) --no-print-directory $(BUILD)/exp/$(NAME)
	./$(BUILD)/exp/$(NAME) $(ARGS)

$(BUILD)/tests/run: $(TEST_OBJ) $(LIB) $(addprefix $(BUILD)/exp/,$(EXPS))
	$(CC) $(LDFLAGS) $(TEST_OBJ) $(LIB) $$(pkg-config --libs criterion) $(LIBS) -o $@

# Each test runs in its own process; 2 jobs keep jobs x threads near the core count.
test: $(BUILD)/tests/run
	DATA_MIRROR="$(DATA_MIRROR)" OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} ./$(BUILD)/tests/run --jobs $${JOBS:-2} $(TESTARGS)

notebook:
	@test -e "$(RUN)" || { echo "no run log $(RUN); run an experiment first, e.g." \
	  "make exp NAME=fewshot_mnist, or name one: make notebook RUN=runs/<exp>/<run>.h5"; exit 2; }
	@mkdir -p $(BUILD)/notebooks
	cd notebooks && $(NB_ENV) $(PYTHON) -m nbconvert --to html --execute \
	  --ExecutePreprocessor.timeout=600 --output-dir "$(abspath $(BUILD))/notebooks" \
	  analyze_run.ipynb compare_runs.ipynb
	@echo "open $(BUILD)/notebooks/analyze_run.html and $(BUILD)/notebooks/compare_runs.html"

notebook-strip:
	$(PYTHON) -m nbconvert --clear-output --inplace notebooks/*.ipynb

# The benchmark (tests/bench/bench.c) and its PyTorch twin; run it on an otherwise idle machine.
$(BUILD)/bench/bench: $(BUILD)/tests/bench/bench.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LIBS) -o $@

bench: $(BUILD)/bench/bench
	BENCH_PYTHON=$(PYTHON) ./$(BUILD)/bench/bench

clean:
	rm -rf $(BUILD)

.SECONDARY:
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
