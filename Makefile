# metagan: build, run, test.  `make help` lists the targets.
CC       ?= gcc
BUILD    ?= build
DATA_MIRROR ?= ../shared/datasets
PYTHON   ?= /usr/bin/python3

HDF5_CFLAGS := $(shell pkg-config --cflags hdf5-serial 2>/dev/null)
HDF5_LIBS   := $(shell pkg-config --libs hdf5-serial 2>/dev/null)

CFLAGS   = -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -g -fopenmp -Wall -Wextra -MMD -MP -I. $(HDF5_CFLAGS)
LDFLAGS  = -fopenmp
LIBS     = $(HDF5_LIBS) -ldnnl -lz -lm

LIB_SRC := $(wildcard framework/*.c framework/layers/*.c models/*.c datasets/*.c)
LIB_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC))
LIB     := $(BUILD)/libmetagan.a
EXPS    := $(sort $(patsubst experiments/%.c,%,$(wildcard experiments/*.c)))
TEST_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tests/*.c tests/ref/*.c))

# Debian packages `make deps` installs (only the missing ones).
DEB_PKGS := gcc make pkg-config libdnnl-dev libhdf5-dev hdf5-tools libcriterion-dev zlib1g-dev \
            python3-h5py python3-numpy python3-torch

.PHONY: all help deps data exp list test clean
all: $(LIB) $(addprefix $(BUILD)/exp/,$(EXPS))

help:
	@echo "make deps                      install Debian packages (missing ones only) and fetch MNIST"
	@echo "make                           build the library and every experiment"
	@echo "make exp NAME=<exp> ARGS=\"k=v\" build and run experiments/<exp>.c"
	@echo "make list                      list the experiments"
	@echo "make test                      build and run the Criterion test suite"

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
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} ./$(BUILD)/tests/run --jobs $${JOBS:-2} $(TESTARGS)

clean:
	rm -rf $(BUILD)

.SECONDARY:
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
