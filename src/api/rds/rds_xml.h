// Domain values -> the RDS XML shapes (DBInstance, Tag, Event) and the
// Marker/MaxRecords pagination every Describe* shares.
#pragma once

#include <algorithm>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "api/wire/xml_writer.h"
#include "catalog/catalog.h"
#include "control/control.h"

namespace strata::api {

void WriteAutomatedBackup(XmlWriter& x, const control::AutomatedBackup& b, const std::string& region);
void WriteInstance(XmlWriter& x, const control::Instance& inst);
void WriteSnapshot(XmlWriter& x, const control::Snapshot& snap);
void WriteTagList(XmlWriter& x, const std::vector<control::Tag>& tags);
void WriteEvent(XmlWriter& x, const catalog::EventRecord& e);

template <typename T>
struct Page {
  std::vector<const T*> items;
  std::optional<std::string> next_marker;
};

// Items sorted by key; the marker is the key of the last item returned, so a
// page stays correct while items are created and deleted between calls.
template <typename T, typename KeyOf>
Page<T> Paginate(const std::vector<T>& items, const std::optional<std::string>& marker,
                 int64_t max_records, const KeyOf& key_of) {
  std::vector<const T*> sorted;
  for (const auto& i : items) sorted.push_back(&i);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [&](const T* a, const T* b) { return key_of(*a) < key_of(*b); });
  Page<T> page;
  for (const T* i : sorted) {
    if (marker && !(key_of(*i) > *marker)) continue;
    if (static_cast<int64_t>(page.items.size()) == max_records) {
      page.next_marker = key_of(*page.items.back());
      break;
    }
    page.items.push_back(i);
  }
  return page;
}

}  // namespace strata::api
