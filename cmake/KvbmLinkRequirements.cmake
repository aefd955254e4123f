# What a program that links libkvbm statically must link too, derived from
# the link libraries of the static target, so the package files follow
# whatever the modules link (cmake/KvbmModule.cmake LIBS) without a second
# list to keep in step.
#
#   kvbm_link_requirements(<target> <prefix>)
#
# walks <target>'s link libraries (and, through imported targets, theirs) and
# sets in the caller's scope:
#   <prefix>_PC_REQUIRES  pkg-config modules (from PkgConfig::<X> targets,
#                         named as they were asked of pkg_check_modules)
#   <prefix>_PC_LIBS      linker flags for everything else (-L<dir> -l<name>,
#                         -pthread, ...), in link order
#   <prefix>_CMAKE_DEPS   CMake code for kvbm-config.cmake that recreates the
#                         imported targets the exported static target names
#                         (find_package(Threads), pkg_check_modules(...),
#                         find_package(CUDAToolkit), ...). Each sets
#                         _kvbm_static_deps_found to FALSE when it fails.
#
# A link item it cannot translate (a generator expression other than
# $<LINK_ONLY:...>, a target of this project) stops the configure: a package
# file that silently misses a library is what this replaces.

# Namespaces of imported targets and the find_package() that creates them,
# where the two names differ.
set(_KVBM_PACKAGE_OF_CUDA CUDAToolkit)

function(_kvbm_link_add property value)
  get_property(values GLOBAL PROPERTY ${property})
  if(NOT value IN_LIST values)
    set_property(GLOBAL APPEND PROPERTY ${property} "${value}")
  endif()
endfunction()

# A library file (absolute path) as -L<dir> -l<name>; the -L is left out for
# the linker's own directories.
function(_kvbm_link_file path)
  get_filename_component(dir "${path}" DIRECTORY)
  get_filename_component(file "${path}" NAME)
  if(NOT file MATCHES "^lib(.+)\\.(so|a)(\\.[0-9.]+)?$")
    message(FATAL_ERROR "kvbm_link_requirements: cannot name library file ${path} as -l<name>")
  endif()
  set(name ${CMAKE_MATCH_1})
  if(NOT dir IN_LIST CMAKE_C_IMPLICIT_LINK_DIRECTORIES)
    _kvbm_link_add(_KVBM_LINK_LIBS "-L${dir}")
  endif()
  _kvbm_link_add(_KVBM_LINK_LIBS "-l${name}")
endfunction()

function(_kvbm_link_item item)
  if(item MATCHES "^\\$<LINK_ONLY:(.+)>$")
    set(item "${CMAKE_MATCH_1}")
  endif()
  if(item MATCHES "\\$<")
    message(FATAL_ERROR "kvbm_link_requirements: cannot translate link item '${item}' for kvbm.pc")
  endif()
  if(item STREQUAL "")
    return()
  endif()

  if(TARGET "${item}")
    get_target_property(imported "${item}" IMPORTED)
    if(NOT imported)
      message(FATAL_ERROR "kvbm_link_requirements: '${item}' is a target of this project; "
                          "link its objects into libkvbm instead")
    endif()
    if(item MATCHES "^PkgConfig::(.+)$")
      # The modules as they were asked of pkg_check_modules(<prefix> ...).
      set(prefix ${CMAKE_MATCH_1})
      set(modules ${__pkg_config_arguments_${prefix}})
      list(REMOVE_ITEM modules REQUIRED QUIET IMPORTED_TARGET GLOBAL NO_CMAKE_PATH
           NO_CMAKE_ENVIRONMENT_PATH)
      if(NOT modules)
        message(FATAL_ERROR "kvbm_link_requirements: no pkg-config module recorded for ${item}")
      endif()
      foreach(m ${modules})
        string(REGEX REPLACE "([<>=]+)" " \\1 " m "${m}")
        _kvbm_link_add(_KVBM_LINK_REQUIRES "${m}")
      endforeach()
      _kvbm_link_add(_KVBM_LINK_CMAKE
        "if(NOT TARGET ${item})\n  find_package(PkgConfig QUIET)\n  if(PkgConfig_FOUND)\n    pkg_check_modules(${prefix} QUIET IMPORTED_TARGET ${modules})\n  endif()\nendif()\nif(NOT TARGET ${item})\n  set(_kvbm_static_deps_found FALSE)\nendif()\n")
      return()
    endif()
    if(item STREQUAL "Threads::Threads")
      _kvbm_link_add(_KVBM_LINK_CMAKE
        "find_package(Threads QUIET)\nif(NOT TARGET Threads::Threads)\n  set(_kvbm_static_deps_found FALSE)\nendif()\n")
      if(CMAKE_THREAD_LIBS_INIT)
        _kvbm_link_add(_KVBM_LINK_LIBS "${CMAKE_THREAD_LIBS_INIT}")
      endif()
      return()
    endif()
    if(item MATCHES "^([A-Za-z0-9_]+)::")
      set(package ${CMAKE_MATCH_1})
      if(DEFINED _KVBM_PACKAGE_OF_${package})
        set(package ${_KVBM_PACKAGE_OF_${package}})
      endif()
      _kvbm_link_add(_KVBM_LINK_CMAKE
        "if(NOT TARGET ${item})\n  find_package(${package} QUIET)\nendif()\nif(NOT TARGET ${item})\n  set(_kvbm_static_deps_found FALSE)\nendif()\n")
    endif()
    get_target_property(type "${item}" TYPE)
    if(NOT type STREQUAL "INTERFACE_LIBRARY")
      get_target_property(location "${item}" IMPORTED_LOCATION)
      if(NOT location)
        string(TOUPPER "${CMAKE_BUILD_TYPE}" config)
        get_target_property(location "${item}" IMPORTED_LOCATION_${config})
      endif()
      if(location)
        _kvbm_link_file("${location}")
      endif()
    endif()
    get_target_property(deps "${item}" INTERFACE_LINK_LIBRARIES)
    if(deps)
      foreach(dep ${deps})
        _kvbm_link_item("${dep}")
      endforeach()
    endif()
  elseif(item MATCHES "^-")
    _kvbm_link_add(_KVBM_LINK_LIBS "${item}")
  elseif(IS_ABSOLUTE "${item}")
    _kvbm_link_file("${item}")
  else()
    _kvbm_link_add(_KVBM_LINK_LIBS "-l${item}")
  endif()
endfunction()

function(kvbm_link_requirements target prefix)
  set_property(GLOBAL PROPERTY _KVBM_LINK_REQUIRES "")
  set_property(GLOBAL PROPERTY _KVBM_LINK_LIBS "")
  set_property(GLOBAL PROPERTY _KVBM_LINK_CMAKE "")
  get_target_property(items ${target} LINK_LIBRARIES)
  foreach(item ${items})
    _kvbm_link_item("${item}")
  endforeach()
  get_property(requires GLOBAL PROPERTY _KVBM_LINK_REQUIRES)
  get_property(libs GLOBAL PROPERTY _KVBM_LINK_LIBS)
  get_property(cmake GLOBAL PROPERTY _KVBM_LINK_CMAKE)
  # -L first, so every -l after it sees the directories.
  set(dirs ${libs})
  list(FILTER dirs INCLUDE REGEX "^-L")
  list(FILTER libs EXCLUDE REGEX "^-L")
  set(${prefix}_PC_REQUIRES ${requires} PARENT_SCOPE)
  set(${prefix}_PC_LIBS ${dirs} ${libs} PARENT_SCOPE)
  string(JOIN "" cmake ${cmake})
  set(${prefix}_CMAKE_DEPS "${cmake}" PARENT_SCOPE)
endfunction()
