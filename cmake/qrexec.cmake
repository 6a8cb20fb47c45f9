# Shared build helpers. Every component uses these so that warnings,
# sanitizers and test registration stay uniform.

set(QREXEC_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
    -Wold-style-cast -Wcast-align -Wunused -Woverloaded-virtual -Wformat=2
    -Wimplicit-fallthrough
    -Wno-missing-field-initializers)  # designated initializers may omit members
if(QREXEC_WERROR)
  list(APPEND QREXEC_WARNINGS -Werror)
endif()

if(QREXEC_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

# qrexec_library(NAME SOURCES... DEPS ...) -> target qrexec_NAME, alias qrexec::NAME
function(qrexec_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(qrexec_${name} STATIC ${ARG_SOURCES})
  add_library(qrexec::${name} ALIAS qrexec_${name})
  target_include_directories(qrexec_${name} PUBLIC ${CMAKE_SOURCE_DIR}/lib)
  target_compile_options(qrexec_${name} PRIVATE ${QREXEC_WARNINGS})
  target_link_libraries(qrexec_${name} PUBLIC ${ARG_DEPS})
endfunction()

# qrexec_executable(NAME SOURCES... DEPS ...) -> build/bin/NAME
function(qrexec_executable name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_compile_options(${name} PRIVATE ${QREXEC_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
endfunction()

# qrexec_gtest(NAME SOURCES... DEPS ... [LABELS ...]) -> one gtest binary,
# registered with ctest per test case (gtest_discover_tests).
function(qrexec_gtest name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  target_compile_options(${name} PRIVATE ${QREXEC_WARNINGS})
  target_compile_definitions(${name} PRIVATE
      QREXEC_BIN_DIR="${CMAKE_BINARY_DIR}/bin"
      QREXEC_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  include(GoogleTest)
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES LABELS "${ARG_LABELS}")
endfunction()

# qrexec_fuzzer(NAME SOURCES... DEPS ... [CORPUS dir]) -> libFuzzer target,
# built only with QREXEC_FUZZ=ON (clang); ctest runs it QREXEC_FUZZ_RUNS times
# over its seed corpus.
function(qrexec_fuzzer name)
  cmake_parse_arguments(ARG "" "CORPUS" "SOURCES;DEPS" ${ARGN})
  if(NOT QREXEC_FUZZ)
    return()
  endif()
  add_executable(${name} ${ARG_SOURCES})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
  target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
  set(corpus_args "")
  if(ARG_CORPUS)
    set(work ${CMAKE_BINARY_DIR}/fuzz/corpus-${name})
    set(corpus_args ${work} ${ARG_CORPUS})
    file(MAKE_DIRECTORY ${work})
  endif()
  add_test(NAME fuzz.${name}
           COMMAND ${name} -runs=${QREXEC_FUZZ_RUNS} -max_len=70000 -timeout=10 ${corpus_args})
  set_tests_properties(fuzz.${name} PROPERTIES LABELS fuzz TIMEOUT 600)
endfunction()
