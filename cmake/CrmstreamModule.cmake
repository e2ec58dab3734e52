# Helpers that give every module the same shape: one library target per
# folder, its dependencies written out, our warnings as errors.

function(crmstream_warnings target)
  # -Wno-restrict: GCC 12 reports false positives inside libstdc++'s
  # std::string operator+ at -O2/-O3 (GCC bug 105329).
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Werror
                                           -Wno-error=deprecated-declarations
                                           $<$<CXX_COMPILER_ID:GNU>:-Wno-restrict>)
endfunction()

function(crmstream_sanitizers target)
  if(CRMSTREAM_SANITIZE)
    target_compile_options(${target} PUBLIC -fsanitize=address,undefined -fno-omit-frame-pointer
                                            -fno-sanitize-recover=undefined)
    target_link_options(${target} PUBLIC -fsanitize=address,undefined)
  endif()
  if(CRMSTREAM_TSAN)
    # -Wno-tsan: GCC 12 reports every std::atomic_thread_fence as unsupported
    # by TSan, and Boost.Asio's headers (handler fences, reference counts)
    # use them; TSan checks the accesses around them all the same.
    target_compile_options(${target} PUBLIC -fsanitize=thread -fno-omit-frame-pointer -Wno-tsan)
    target_link_options(${target} PUBLIC -fsanitize=thread)
  endif()
endfunction()

# crmstream_add_module(NAME SOURCES a.cpp b.cpp DEPS crmstream_common ...)
# Creates target crmstream_<NAME>; an empty SOURCES list makes an interface
# (header-only) library.
function(crmstream_add_module name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  set(target crmstream_${name})
  set_property(GLOBAL APPEND PROPERTY CRMSTREAM_MODULES ${name})
  if(ARG_SOURCES)
    add_library(${target} STATIC ${ARG_SOURCES})
    target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR}/include
                                         PRIVATE ${PROJECT_SOURCE_DIR}/src)
    target_link_libraries(${target} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
    crmstream_warnings(${target})
    crmstream_sanitizers(${target})
  else()
    add_library(${target} INTERFACE)
    target_include_directories(${target} INTERFACE ${PROJECT_SOURCE_DIR}/include)
    target_link_libraries(${target} INTERFACE ${ARG_DEPS})
  endif()
endfunction()

# crmstream_add_test(NAME SOURCES x_test.cpp DEPS crmstream_foo [PROPERTIES p v ...])
# One Catch2 executable per module; every TEST_CASE becomes a ctest test.
# PROPERTIES are added to each of them (e.g. RESOURCE_LOCK).
function(crmstream_add_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PROPERTIES" ${ARGN})
  set(target ${name}_tests)
  add_executable(${target} ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE crmstream_test_support ${ARG_DEPS})
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/tests)
  crmstream_warnings(${target})
  crmstream_sanitizers(${target})
  # --warn NoTests: a ctest entry whose name matches no test case fails
  # instead of passing with nothing run (e.g. a ';' in a test name, which
  # CMake splits).
  # SKIP_RETURN_CODE: a test case that skips (tests/support/test_support.h)
  # shows as skipped, not passed.
  catch_discover_tests(${target} TEST_PREFIX "${name}:" EXTRA_ARGS --warn NoTests
                       PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77
                       ENVIRONMENT "CRMSTREAM_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
                       ${ARG_PROPERTIES})
endfunction()

# crmstream_check_module_edges(): every module includes only the public
# headers of the modules it declares (directly or through its declared
# dependencies) and its own. All modules share one include root, so the
# compiler would not catch an undeclared edge; this fails the configure step
# with the offending file, line and module instead. Call it once, after the
# last crmstream_add_module.
function(crmstream_check_module_edges)
  get_property(modules GLOBAL PROPERTY CRMSTREAM_MODULES)
  set(problems "")
  foreach(module IN LISTS modules)
    # The crmstream modules reachable from this one's declared dependencies.
    set(allowed ${module})
    set(queue crmstream_${module})
    set(seen "")
    while(queue)
      list(POP_FRONT queue target)
      if(target IN_LIST seen)
        continue()
      endif()
      list(APPEND seen ${target})
      get_target_property(type ${target} TYPE)
      if(type STREQUAL "INTERFACE_LIBRARY")
        get_target_property(deps ${target} INTERFACE_LINK_LIBRARIES)
      else()
        get_target_property(deps ${target} LINK_LIBRARIES)
      endif()
      foreach(dep IN LISTS deps)
        if(dep MATCHES "^crmstream_([a-z_]+)$" AND TARGET ${dep})
          list(APPEND allowed ${CMAKE_MATCH_1})
          list(APPEND queue ${dep})
        endif()
      endforeach()
    endwhile()
    file(GLOB files ${PROJECT_SOURCE_DIR}/src/${module}/*.cpp ${PROJECT_SOURCE_DIR}/src/${module}/*.h
         ${PROJECT_SOURCE_DIR}/include/crmstream/${module}/*.h)
    foreach(file IN LISTS files)
      file(STRINGS ${file} includes REGEX "^#include \"crmstream/[a-z_]+/")
      foreach(line IN LISTS includes)
        string(REGEX MATCH "crmstream/([a-z_]+)/" unused "${line}")
        if(NOT CMAKE_MATCH_1 IN_LIST allowed)
          file(RELATIVE_PATH relative ${PROJECT_SOURCE_DIR} ${file})
          string(APPEND problems "\n  ${relative}: ${line} (module '${module}' does not depend on '${CMAKE_MATCH_1}')")
        endif()
      endforeach()
    endforeach()
  endforeach()
  if(problems)
    message(FATAL_ERROR "Undeclared module dependencies (add them to the module's DEPS in src/<module>/CMakeLists.txt, or remove the include):${problems}")
  endif()
endfunction()
