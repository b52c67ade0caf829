<#
.SYNOPSIS
    Stops the wfpcallout driver (`sc.exe stop WfpCallout`).

.DESCRIPTION
    The driver's unload completes every pended connection with its default
    verdict, removes flow contexts and unregisters the callouts. Filters
    added by wfpctl stay; they permit while the callouts are unregistered
    (FWPM_FILTER_FLAG_PERMIT_IF_CALLOUT_UNREGISTERED) and are adopted when
    the driver starts again.

.EXAMPLE
    .\Stop-WfpCallout.ps1
#>
[CmdletBinding(SupportsShouldProcess)]
param()

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
. (Join-Path $PSScriptRoot 'WfpCallout.Common.ps1')

Assert-Administrator
if ($PSCmdlet.ShouldProcess($script:ServiceName, 'stop')) {
    Stop-WfpCalloutService
}
