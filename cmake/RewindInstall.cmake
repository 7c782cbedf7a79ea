# `cmake --install` writes the library, its headers and a package config, so an outside project
# does find_package(rewind) and links rewind::rewind.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS rewind EXPORT rewindTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
foreach(dir core autograd backends nn models)
  install(DIRECTORY ${dir}/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/rewind/${dir}
    FILES_MATCHING PATTERN "*.h")
endforeach()
install(EXPORT rewindTargets NAMESPACE rewind:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/rewind)
configure_package_config_file(cmake/rewindConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/rewindConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/rewind)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/rewindConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/rewindConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/rewindConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/rewind)
