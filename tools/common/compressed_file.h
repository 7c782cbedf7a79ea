#pragma once
// Reading data files that may be gzip-compressed, as Debian ships them (the GCIDE dictionary as a
// dictzip .dz file, Fashion-MNIST as .gz): callers see the same bytes whether or not the file is
// compressed.
#include <cstdint>
#include <filesystem>
#include <vector>

namespace rw::tools {

// The bytes of the file at `path`. A file that starts with the gzip magic bytes (1f 8b) is
// decompressed, whatever its name: every member of a multi-member stream, one after the other
// (`cat a.gz b.gz` decompresses to a then b; dictzip files are gzip streams with an extra header
// field, read the same way). Any other file is returned as it is.
//
// rw::Error naming the file when it is missing, not a regular file or unreadable, and when its
// gzip data is corrupt (a bad header, a bad checksum), truncated, or followed by bytes that are
// not another gzip member.
//
// Memory: the compressed input streams through a small buffer; the output is sized from the
// gzip trailer's length field when it is plausible, so a 40 MB text takes about 40 MB.
std::vector<uint8_t> read_file_bytes(const std::filesystem::path& path);

}  // namespace rw::tools
