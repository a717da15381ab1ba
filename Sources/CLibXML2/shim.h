#ifndef COMPROBIFY_CLIBXML2_SHIM_H
#define COMPROBIFY_CLIBXML2_SHIM_H

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <libxml/c14n.h>
#include <libxml/xmlschemas.h>
#include <libxml/xmlsave.h>

#endif
