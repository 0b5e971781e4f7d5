/* fw.h: the framework's public API in one include, for models, datasets and experiments.
 *
 *   base.h      status codes, errors, FW_ASSERT / FW_TRY / FW_CHECK, aligned allocation, clock
 *   rng.h       counter-based random streams from (seed, purpose, step, index)
 *   params.h    flat parameter vectors
 *   graph.h     layer graphs and per-thread execs over oneDNN (conv2d, batchnorm, relu,
 *               maxpool2, global avgpool, flatten, linear)
 *   loss.h      softmax cross-entropy, accuracy, mean +- 95 % CI
 *   optim.h     SGD and Adam
 *   data.h      IDX files, class-indexed datasets, N-way K-shot Q-query episodes
 *   meta.h      the OpenMP meta-batch runner, evaluation, nearest-neighbour baseline
 *   maml.h      MAML tasks for any classifier graph
 *   config.h    key=value experiment configuration
 *   log.h       HDF5 run logs (the schema is documented there)
 *   ckpt.h      checkpoints
 *   progress.h  progress bar / lines
 *   run.h       one training run: config with resume, log, checkpoints, signals, summary
 */
#ifndef FW_FW_H
#define FW_FW_H

#include "framework/base.h"
#include "framework/rng.h"
#include "framework/params.h"
#include "framework/graph.h"
#include "framework/loss.h"
#include "framework/optim.h"
#include "framework/data.h"
#include "framework/meta.h"
#include "framework/maml.h"
#include "framework/config.h"
#include "framework/log.h"
#include "framework/progress.h"
#include "framework/ckpt.h"
#include "framework/run.h"

#endif
