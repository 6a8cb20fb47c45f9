// Text helpers that make the policy engine read text exactly as the Python
// reference does (policy-language.md §1.3): strict UTF-8 decoding, Python's
// line splitting of text files (\n, \r\n, lone \r), Python's Unicode
// whitespace for stripping and splitting, and Python's repr() of a string
// (the error messages quote tokens with it).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace qrexec::policy::text {

// True when `bytes` is well-formed UTF-8 as Python's strict "utf-8" codec
// accepts it (no overlongs, no surrogates, nothing above U+10FFFF).
bool IsValidUtf8(std::string_view bytes);

// Splits file text into lines the way Python's universal-newline text mode
// does: "\n", "\r\n" and a lone "\r" each end a line. A final line without a
// terminator is still a line; the terminators are not included.
std::vector<std::string_view> SplitLines(std::string_view text);

// Python str.strip() / str.split() with no argument, on valid UTF-8 text:
// whitespace is the set listed in policy-language.md §1.3.
std::string_view Strip(std::string_view line);
std::vector<std::string_view> SplitFields(std::string_view line);

// Python repr() of a str given as UTF-8: 'abc', "it's", '\x00', '\\'.
// Non-printable code points are escaped as \xNN, \uNNNN or \UNNNNNNNN
// (control and format characters are recognised; unassigned code points are
// kept as is, which is the only approximation).
std::string PyRepr(std::string_view utf8);

// Python repr() of a list of str: ['a', 'b'] (empty: []).
std::string PyReprList(const std::vector<std::string_view>& items);

}  // namespace qrexec::policy::text
