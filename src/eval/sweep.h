// Runs the cells of an evaluation matrix (model x KV configuration x task parameters) that a
// results file does not hold yet, appending one row per cell. Each cell is identified by the
// hash of its full configuration (canonical JSON: sorted keys), so a rerun resumes where the
// last one stopped and a changed configuration never reuses stale rows.
//
// Ctrl-C: the first SIGINT lets the current cell finish, write its row and stop the sweep;
// a second one exits the process at once (rows already written are complete on disk).
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <vector>

#include "eval/results_file.h"

namespace tqlm::eval {

struct SweepCell {
  nlohmann::json config;  // everything that determines the result; hashed
  std::string label;      // short text for the progress line
  double cost = 1;        // relative run time (e.g. tokens), for the progress line's ETA
};

// 16 hex digits of SHA-256 over config.dump() (nlohmann objects keep keys sorted).
std::string ConfigHash(const nlohmann::json& config);

struct SweepSummary {
  int total = 0;        // cells in the matrix
  int skipped = 0;      // already in the results file
  int ran = 0;          // run and written now
  bool interrupted = false;
};

// Called before each cell and at the end with the summed cost of the cells run so far and of
// all cells to run, and the label of the next cell.
using SweepProgress =
    std::function<void(double done, double total, const std::string& label)>;

// Runs `run(cell)` for each cell whose hash is not in `results`, in order. The returned JSON
// object's fields are merged into the row after "hash", "config", "wall_seconds" and
// "peak_rss_bytes" (peak resident memory during the cell where the kernel can reset the
// high-water mark, else of the process so far; "peak_rss_scope" says which).
SweepSummary RunSweep(ResultsFile& results, const std::vector<SweepCell>& cells,
                      const std::function<nlohmann::json(const SweepCell&)>& run,
                      const SweepProgress& progress = {});

// Cells of `cells` not yet in `results`.
int PendingCells(const ResultsFile& results, const std::vector<SweepCell>& cells);

// True once SIGINT arrived during RunSweep (for loops inside a cell that want to know).
bool SweepStopRequested();

// Peak resident set size: resets the kernel's high-water mark (true if it could) / reads it.
bool ResetPeakRss();
size_t PeakRssBytes();

}  // namespace tqlm::eval
